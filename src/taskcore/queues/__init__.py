"""Named queues as an operator sees them: pause, resume, and what each holds."""

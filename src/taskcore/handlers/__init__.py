"""Task types: the handlers a deployment registers, and the built-in ones."""

"""What people look at: one snapshot of what the system is doing."""

"""The domain: the task entity and its rules, and the records the ports exchange.

Nothing here does I/O; ``Task`` holds every legal transition.
"""

"""How a task's change leaves the process: the transition writer and what it drives.

``Transitions`` persists a transition and then updates the cache
(``StatusCache``), announces it to waiting readers (``ChangeAnnouncer``) and
publishes the wake-up of a PENDING task (``Dispatcher``).
"""

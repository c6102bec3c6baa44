"""Use what was trained: talk to it, ship it, compare it (above the job floor; nothing below imports it)."""

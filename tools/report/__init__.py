"""The audit report of a run, and the presenters the CLI shares with it (the estimate table)."""

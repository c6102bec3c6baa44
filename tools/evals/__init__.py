"""Checks on a trained model against its base: held-out loss, overfitting, format, leaks, degenerate output."""

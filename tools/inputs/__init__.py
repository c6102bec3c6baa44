"""What Aegis reads: datasets (safely, once), tokenizers, model configs and local models, and the prepared spec."""

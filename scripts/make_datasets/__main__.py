"""``python -m scripts.make_datasets [--out DIR]``: rewrite the bundled .jsonl files in data/ (or DIR)."""

from scripts.make_datasets import main

main()

"""The training program: importable, tested modules that the renderer also inlines into train.py.

Nothing here may import from the rest of `tools` (import-linter's bottom floor): the rendered script
carries this code to a machine that has only train.py and config.json.
"""

"""The engine of Aegis-ML, in floors that import only downward (see pyproject.toml's import-linter contract):
recipe ← core ← inputs ← plan ← policy ← run ← report | evals ← job. It knows nothing of LangChain or agent/.
"""

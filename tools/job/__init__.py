"""The job engine: JobState (state.py) and the steps that move it, in the order a job meets them:
planning (spec, prepare, estimate, pre-flight), approval (gate, person), attempt (the one step that spends),
healing (evals, remediation), reporting; pipeline.py drives them for `aegis train` without an LLM.
"""

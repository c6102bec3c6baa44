"""The scripted agent eval harness: scenarios in YAML (``scenarios``), a runner that plays the person
(``runner``), pure scoring over what the run left behind (``scoring``), the scorecard (``scorecard``), and
the LangSmith experiment (``experiment``).

Every check is computed from the jobs' append-only event logs and the agent's words, never from what the
agent says it did.
"""

"""The agent around the engine: LangGraph graph and session, typed LangChain tools, the CLI, the Chainlit UI, evals."""

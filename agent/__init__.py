"""The agent: loop, model client, budgets, context. Knows nothing of the UI."""

"""Access control and limits: client keys, request and token rate limits, spend budgets."""

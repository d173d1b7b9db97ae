"""Reports from finished runs: figures, tables, leaderboard comparison, regression checks. Never loads a model."""

"""Tasks: how each task's data loads, its prompt templates and its gold scorer."""

"""Model backends. Hugging Face causal LMs are the one backend the engine drives token by token."""

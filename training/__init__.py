"""Training, kept apart from the harness (the studies only load what this package saves): preference tuning on trl,
SFT and DPO of causal language models (`w2s tune`) and gold-labelled preference pairs (`w2s prefs`); the miniature's
models pretrained from scratch (`w2s train`); and the recipe that orders and caches those builds (`w2s reproduce`)."""

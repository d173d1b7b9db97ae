"""Preference tuning on trl: SFT and DPO of causal language models (`w2s tune`) and gold-labelled preference pairs
(`w2s prefs`). Kept apart from the harness: the studies only load what this package saves."""

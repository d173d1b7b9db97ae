"""The methods weak-to-strong search is compared against; each reuses the engine where it is a special case of it."""

"""Weak-to-strong search harness: decoding-time alignment of a strong model guided by a small tuned/untuned pair."""

__version__ = "0.1.0"

"""Preprocessing into a registered, content-keyed cache (``medseq preprocess``)."""

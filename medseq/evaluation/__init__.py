"""Patient-level evaluation: metrics, the size-only baseline, and run-directory evaluation."""

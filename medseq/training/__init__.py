"""Training: settings, dataset over the cache, splits, labels, the loop and the run directory."""

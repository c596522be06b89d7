"""Lesion measurement, correspondence across timepoints, and response criteria."""

"""The error every refused SEG, RTSTRUCT or export input raises (exit code 2)."""

from __future__ import annotations

from medseq.errors import DicomError


class AnnotationError(DicomError):
    """A SEG or RTSTRUCT cannot give a lesion mask on its image (names the file and why)."""

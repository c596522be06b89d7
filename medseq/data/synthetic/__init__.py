"""Synthetic longitudinal CT cohorts with exact ground truth (``medseq sample-data``).

Modules: :mod:`.phantom` (anatomy), :mod:`.lesions` (shapes and texture), :mod:`.dynamics`
(growth under treatment, response cues), :mod:`.plan` (everything random about a patient),
:mod:`.truth` (rasterised masks, measurements, RECIST), :mod:`.recist_truth` (the generator's own
statement of RECIST 1.1, apart from :mod:`medseq.tracking`), :mod:`.render` (images),
:mod:`.dicom_writer` / :mod:`.nifti_writer` (files) and :mod:`.cohort` (orchestration).
:mod:`.analytic` and :mod:`.analytic_course` derive diameters and the RECIST course from the
lesion shapes without masks, to cross-check the recorded truth.
"""

from __future__ import annotations

from medseq.data.synthetic.cohort import generate_cohort, simulate_cohort
from medseq.data.synthetic.plan import SIZES

__all__ = ["SIZES", "generate_cohort", "simulate_cohort"]

"""The learned follow-up lesion tracker: one baseline annotation is enough (docs/track.md).

Modules, each with one job: :mod:`annotations` (lesion list / RECIST line CSV),
:mod:`prompt` (propagation to follow-ups, crops and prompt channels), :mod:`network` (the MONAI
segmenter), :mod:`pairs` (training samples from a cache), :mod:`train` (``train-tracker``),
:mod:`segment` (per-lesion inference), :mod:`detect` (new lesions), :mod:`fill` (masks for
``track``/``predict``) and :mod:`provenance` (``source``/``confidence`` columns). Nothing here
imports torch or MONAI at module level.
"""

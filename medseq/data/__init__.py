"""Data for medseq: the synthetic cohort generator and (elsewhere) training datasets.

Nothing heavy is imported here, so ``import medseq.data`` stays cheap.
"""

"""Shared array helpers."""

from __future__ import annotations

import numpy as np

from medseq.arrays import nonzero_box


def test_nonzero_box_is_the_tight_box() -> None:
    mask = np.zeros((6, 7, 8), np.uint8)
    mask[1, 2, 3] = 1
    mask[4, 5, 6] = 2
    assert nonzero_box(mask) == (slice(1, 5), slice(2, 6), slice(3, 7))
    assert nonzero_box(np.zeros((3, 3, 3), bool)) is None

"""The even-odd polygon fill RTSTRUCT contours go through."""

from __future__ import annotations

import numpy as np

from medseq.dicom_objects.rasterize import fill_even_odd


def _square(u0: float, v0: float, u1: float, v1: float) -> np.ndarray:
    return np.array([[u0, v0], [u1, v0], [u1, v1], [u0, v1]])


def test_voxel_centre_inside_is_in() -> None:
    filled = fill_even_odd([_square(1.5, 2.5, 4.5, 5.5)], (8, 8))
    expected = np.zeros((8, 8), dtype=bool)
    expected[2:5, 3:6] = True
    assert np.array_equal(filled, expected)


def test_boundary_centres_are_in_on_the_low_side_only() -> None:
    filled = fill_even_odd([_square(1.0, 1.0, 3.0, 3.0)], (6, 6))
    assert np.argwhere(filled).tolist() == [[1, 1], [1, 2], [2, 1], [2, 2]]


def test_inner_contour_is_a_hole_and_an_island_in_it_is_filled() -> None:
    outer, hole, island = _square(0.5, 0.5, 9.5, 9.5), _square(2.5, 2.5, 7.5, 7.5), \
        _square(4.5, 4.5, 5.5, 5.5)
    filled = fill_even_odd([outer, hole, island], (10, 10))
    expected = np.zeros((10, 10), dtype=bool)
    expected[1:10, 1:10] = True
    expected[3:8, 3:8] = False
    expected[5, 5] = True
    assert np.array_equal(filled, expected)


def test_separate_contours_on_one_slice_and_either_winding() -> None:
    a = _square(0.5, 0.5, 2.5, 2.5)
    b = _square(5.5, 5.5, 7.5, 7.5)[::-1]  # clockwise
    filled = fill_even_odd([a, b], (9, 9))
    assert filled.sum() == 8
    assert filled[1:3, 1:3].all()
    assert filled[6:8, 6:8].all()


def test_contours_sharing_an_edge_fill_their_union_once() -> None:
    left, right = _square(0.5, 0.5, 3.0, 4.5), _square(3.0, 0.5, 5.5, 4.5)
    both = fill_even_odd([left, right], (7, 7))
    assert np.array_equal(both, fill_even_odd([_square(0.5, 0.5, 5.5, 4.5)], (7, 7)))
    alone = fill_even_odd([left], (7, 7)) & fill_even_odd([right], (7, 7))
    assert not alone.any()  # a centre on the shared edge belongs to one contour only


def test_polygon_beyond_the_slice_is_clipped_and_degenerate_ones_ignored() -> None:
    filled = fill_even_odd([_square(-5.0, -5.0, 2.5, 2.5), np.array([[1.0, 1.0], [3.0, 3.0]])],
                           (4, 4))
    assert filled.sum() == 9
    assert not fill_even_odd([], (3, 3)).any()

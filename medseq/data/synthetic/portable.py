"""Arithmetic that gives the same bits on every CPU, for the synthetic generator.

numpy picks an implementation of its transcendental functions when it starts, by CPU: on
AVX-512 machines ``exp``, ``log``, ``cbrt``, ``arctan2`` and ``power`` (float64; some float32)
come from SVML, on AVX2 or ARM from other code, and they differ in the last bit. BLAS and LAPACK
kernels (``@``, ``dot``, ``inv``, ``qr``, ``norm`` of a vector) sum in kernel-specific orders
too. Rounding a rendered HU value to an integer turns such a last-bit difference into a different
voxel now and then, so the bundled sample data differed between an AVX-512 and an AVX2 machine.

Everything here uses only IEEE basic operations (``+ - * /``, ``sqrt``, ``rint``, ``frexp``,
``ldexp``, comparisons), which are exactly rounded on every CPU, in a fixed order: Cody-Waite
range reduction and Taylor polynomials for the functions, explicit sums of products for small
matrices. Accuracy is a few ulp (float64) or about 1e-7 (float32): plenty for a phantom.
The generator's modules must not call numpy's transcendental ufuncs, ``**`` with a non-square
exponent, ``np.linalg``, ``@`` or ``scipy.ndimage`` filters on floats;
``tests/data/test_portable.py`` checks that.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

Array = np.ndarray

_PI_64 = (3.14159265346825122833e00, 1.21542010126079319532e-10, 4.04453249742233291160e-21)
"""pi in three parts of 33 bits (fdlibm): ``q * part`` is exact for the arguments we see."""
_PI_32 = (3.140625, 9.67502593994140625e-4, 1.509957990978376432e-7)
"""pi in three float32 parts (cephes)."""
_SIN_64 = tuple((-1) ** n / math.factorial(2 * n + 1) for n in range(11))
_COS_64 = tuple((-1) ** n / math.factorial(2 * n) for n in range(12))
_SIN_32 = _SIN_64[:7]
_COS_32 = _COS_64[:8]
_LN2_HI, _LN2_LO = 6.93147180369123816490e-01, 1.90821492927058770002e-10
_EXP = tuple(1.0 / math.factorial(n) for n in range(14))
_LOG = tuple(1.0 / (2 * n + 1) for n in range(12))
_ATAN_64 = tuple((-1) ** n / (2 * n + 1) for n in range(12))
_ATAN_32 = _ATAN_64[:6]


def cos(x: Any) -> Any:
    """Cosine, in the dtype of ``x`` (float32 stays float32, anything else float64)."""
    r, odd, single = _reduce_pi(x)
    out = _horner(r * r, _COS_32 if single else _COS_64)
    return _flip(out, odd)


def sin(x: Any) -> Any:
    """Sine, in the dtype of ``x`` (float32 stays float32, anything else float64)."""
    r, odd, single = _reduce_pi(x)
    out = _horner(r * r, _SIN_32 if single else _SIN_64)
    out *= r
    return _flip(out, odd)


def exp(x: Any) -> Any:
    """Exponential (float64)."""
    x = np.clip(np.asarray(x, dtype=np.float64), -750.0, 709.0)
    k = np.rint(x * (1.0 / math.log(2.0)))
    r = x - k * _LN2_HI
    r = r - k * _LN2_LO
    out = np.ldexp(_horner(r, _EXP), k.astype(np.int32))
    return out if out.ndim else np.float64(out)


def log(x: Any) -> Any:
    """Natural logarithm (float64) of positive finite values."""
    x = np.asarray(x, dtype=np.float64)
    m, e = np.frexp(x)
    low = m < math.sqrt(0.5)
    m = np.where(low, m * 2.0, m)  # m in [sqrt(1/2), sqrt(2))
    e = (e - low).astype(np.float64)
    f = m - 1.0
    s = f / (2.0 + f)
    series = 2.0 * s * _horner(s * s, _LOG)
    out = e * _LN2_HI + (series + e * _LN2_LO)
    return out if out.ndim else np.float64(out)


def cbrt(x: Any) -> Any:
    """Real cube root (float64)."""
    x = np.asarray(x, dtype=np.float64)
    a = np.abs(x)
    positive = a > 0.0
    y = np.where(positive, exp(log(np.where(positive, a, 1.0)) / 3.0), 0.0)
    safe = np.where(positive, y, 1.0)
    y = y - (y * y * y - a) / (3.0 * safe * safe)  # one Newton step: a last-bit polish
    out = np.where(x < 0.0, -y, y)
    return out if out.ndim else np.float64(out)


def power(x: Any, exponent: int) -> Any:
    """``x ** exponent`` for a small positive integer exponent, by repeated products."""
    if exponent < 1:
        raise ValueError(f"exponent must be a positive integer, got {exponent}")
    out = x
    for _ in range(exponent - 1):
        out = out * x
    return out


def arctan2(y: Any, x: Any) -> Any:
    """Angle of ``(x, y)`` in (-pi, pi], in the dtype of the inputs (float32 or float64)."""
    y, x = np.asarray(y), np.asarray(x)
    ft = np.float32 if x.dtype == y.dtype == np.float32 else np.float64
    y, x = y.astype(ft, copy=False), x.astype(ft, copy=False)
    ax, ay = np.abs(x), np.abs(y)
    big, small = np.maximum(ax, ay), np.minimum(ax, ay)
    t = np.where(big > 0, small / np.where(big > 0, big, ft(1)), ft(0))
    # atan(t) = 2 atan(t / (1 + sqrt(1 + t^2))), twice: |t| <= tan(pi/16) for the series.
    for _ in range(2):
        t = t / (ft(1) + np.sqrt(ft(1) + t * t))
    a = ft(4) * t * _horner(t * t, _ATAN_32 if ft is np.float32 else _ATAN_64)
    a = np.where(ay > ax, ft(np.pi / 2) - a, a)
    a = np.where(x < 0, ft(np.pi) - a, a)
    return np.where(y < 0, -a, a)


def matmul(a: Any, b: Any) -> Array:
    """``a @ b`` for small float64 matrices (2D; ``b`` may be a vector), summed in index order."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    vector = b.ndim == 1
    b2 = b[:, None] if vector else b
    out = a[:, 0, None] * b2[0][None, :]
    for k in range(1, a.shape[1]):
        out = out + a[:, k, None] * b2[k][None, :]
    return out[:, 0] if vector else out


def apply(matrix: Array, points: Any) -> Array:
    """Apply a 4x4 matrix to an (N, 3) (or (3,)) array of points."""
    pts = np.asarray(points, dtype=np.float64)
    m = np.asarray(matrix, dtype=np.float64)
    out = pts[..., 0, None] * m[:3, 0] + pts[..., 1, None] * m[:3, 1]
    return out + pts[..., 2, None] * m[:3, 2] + m[:3, 3]


def det3(m: Any) -> float:
    """Determinant of a 3x3 matrix."""
    m = np.asarray(m, dtype=np.float64)
    return float(
        m[0, 0] * (m[1, 1] * m[2, 2] - m[1, 2] * m[2, 1])
        - m[0, 1] * (m[1, 0] * m[2, 2] - m[1, 2] * m[2, 0])
        + m[0, 2] * (m[1, 0] * m[2, 1] - m[1, 1] * m[2, 0])
    )


def affine_inverse(m: Any) -> Array:
    """Inverse of a 4x4 affine matrix (last row 0 0 0 1), by the adjugate."""
    m = np.asarray(m, dtype=np.float64)
    a = m[:3, :3]
    adj = np.empty((3, 3))
    for i in range(3):
        for j in range(3):
            r0, r1 = [r for r in range(3) if r != j]
            c0, c1 = [c for c in range(3) if c != i]
            minor = a[r0, c0] * a[r1, c1] - a[r0, c1] * a[r1, c0]
            adj[i, j] = minor if (i + j) % 2 == 0 else -minor
    inverse = np.eye(4)
    inverse[:3, :3] = adj / det3(a)
    inverse[:3, 3] = -matmul(inverse[:3, :3], m[:3, 3])
    return inverse


def norm(v: Any, axis: int = -1, *, keepdims: bool = False) -> Any:
    """Euclidean norm along ``axis`` (float64), summed in index order."""
    v = np.moveaxis(np.asarray(v, dtype=np.float64), axis, -1)
    total = v[..., 0] * v[..., 0]
    for k in range(1, v.shape[-1]):
        total = total + v[..., k] * v[..., k]
    out = np.sqrt(total)
    if keepdims:
        out = np.expand_dims(out, axis)
    return out if out.ndim else float(out)


def orthonormal_columns(g: Array) -> Array:
    """Gram-Schmidt on the columns of a square matrix: the Q of its QR with R's diagonal > 0."""
    g = np.asarray(g, dtype=np.float64)
    q = np.empty_like(g)
    for j in range(g.shape[1]):
        v = g[:, j].copy()
        for i in range(j):
            v = v - _dot(q[:, i], v) * q[:, i]
        q[:, j] = v / norm(v)
    return q


def gaussian_smooth(array: Array, sigma: float, axis: int, *, truncate: float = 3.0) -> Array:
    """Gaussian filter along ``axis`` (edges mirrored, like scipy's default ``reflect``)."""
    weights = gaussian_kernel(sigma, truncate=truncate).astype(array.dtype)
    radius = (weights.size - 1) // 2
    pad = [(0, 0)] * array.ndim
    pad[axis] = (radius, radius)
    padded = np.pad(array, pad, mode="symmetric")
    n = array.shape[axis]

    def shifted(k: int) -> Array:
        index = [slice(None)] * array.ndim
        index[axis] = slice(k, k + n)
        return padded[tuple(index)]

    out = shifted(radius) * weights[radius]
    for k in range(1, radius + 1):  # the kernel is symmetric: pair the taps k before and after
        pair = shifted(radius - k) + shifted(radius + k)
        pair *= weights[radius + k]
        out += pair
    return out


def gaussian_kernel(sigma: float, *, truncate: float = 3.0) -> Array:
    """Normalised float64 Gaussian weights of radius ``int(truncate * sigma + 0.5)``."""
    radius = int(truncate * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    phi = exp(-0.5 / (sigma * sigma) * (x * x))
    total = 0.0
    for w in phi:
        total += float(w)
    return np.asarray(phi / total)


def _dot(a: Array, b: Array) -> float:
    total = 0.0
    for x, y in zip(a.tolist(), b.tolist(), strict=True):
        total += x * y
    return total


def _horner(x: Array, coefficients: Sequence[float]) -> Array:
    """``c0 + c1 x + c2 x^2 + ...``, one rounding per operation, highest power first."""
    ft = x.dtype.type if isinstance(x, np.ndarray) else np.float64
    out = np.full_like(x, ft(coefficients[-1]))
    for c in reversed(coefficients[:-1]):
        out *= x
        out += ft(c)
    return out


def _reduce_pi(x: Any) -> tuple[Array, Array, bool]:
    """``x = q pi + r`` with ``|r| <= pi/2``: (r, q odd, float32?)."""
    x = np.asarray(x)
    single = x.dtype == np.float32
    ft = np.float32 if single else np.float64
    x = x.astype(ft, copy=False)
    q = np.rint(x * ft(1.0 / np.pi))
    r = x - q * ft((_PI_32 if single else _PI_64)[0])
    for part in (_PI_32 if single else _PI_64)[1:]:
        r -= q * ft(part)
    odd = (q.astype(np.int64) & 1).astype(bool)
    return r, odd, single


def _flip(values: Array, odd: Array) -> Any:
    """Negate where ``odd``; a 0-d result comes back as a numpy scalar."""
    out = np.where(odd, -values, values)
    return out[()] if out.ndim == 0 else out

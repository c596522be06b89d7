"""The generator gives the same bits on every CPU: portable arithmetic, and nothing that is not.

numpy chooses SIMD implementations of ``exp``, ``log``, ``cbrt``, ``arctan2``, ``power``... when
it starts (AVX-512 SVML, AVX2, NEON, baseline), and OpenBLAS chooses kernels by CPU; their last
bits differ, and rounding to integer HU turns that into different voxels (the bundled sample data
differed on an AVX2-only machine). The generator therefore computes with
``medseq.data.synthetic.portable`` only.
"""

from __future__ import annotations

import ast
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from medseq.data.synthetic import portable
from tests.data.synthetic_digest import dispatched_simd, generator_digest

ROOT = Path(__file__).resolve().parents[2]
GENERATOR = ROOT / "medseq" / "data" / "synthetic"
_NUMPY_BANNED = {
    "cos", "sin", "tan", "arccos", "arcsin", "arctan", "arctan2", "cosh", "sinh", "tanh",
    "exp", "exp2", "expm1", "log", "log2", "log10", "log1p", "logaddexp", "cbrt", "power",
    "float_power", "hypot", "deg2rad", "radians", "dot", "vdot", "inner", "matmul", "einsum",
    "tensordot", "linalg", "polyval", "interp",
}
_SCIPY_FLOAT_FILTERS = {
    "gaussian_filter", "gaussian_filter1d", "correlate", "correlate1d", "convolve", "convolve1d",
    "uniform_filter", "uniform_filter1d", "zoom", "map_coordinates", "affine_transform", "shift",
    "rotate", "spline_filter",
}
_MATH_ALLOWED = {"pi", "e", "inf", "nan", "tau", "isfinite", "isnan", "floor", "ceil",
                 "factorial", "sqrt"}


def _violations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        where = f"{path.name}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            owner, name = node.value.id, node.attr
            if owner in ("np", "numpy") and name in _NUMPY_BANNED:
                found.append(f"{where} np.{name}")
            if owner == "ndimage" and name in _SCIPY_FLOAT_FILTERS:
                found.append(f"{where} ndimage.{name}")
            if owner == "math" and name not in _MATH_ALLOWED:
                found.append(f"{where} math.{name}")
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.MatMult):
            found.append(f"{where} @")
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
            literal_ints = all(
                isinstance(side, ast.Constant) and type(side.value) is int
                for side in (node.left, node.right)
            )
            if not literal_ints:
                found.append(f"{where} **")
    return found


CHECK_ONLY = {"analytic.py", "analytic_course.py"}
"""Cross-checks of the truth against analytic geometry: they write nothing the generator outputs."""


def test_check_only_modules_feed_nothing_the_generator_writes() -> None:
    feeders = [p.name for p in GENERATOR.glob("*.py") if p.name not in CHECK_ONLY
               and any(f"synthetic.{m[:-3]}" in p.read_text() for m in CHECK_ONLY)]
    assert not feeders


def test_generator_uses_no_cpu_dependent_arithmetic() -> None:
    modules = [p for p in sorted(GENERATOR.glob("*.py"))
               if p.name != "portable.py" and p.name not in CHECK_ONLY]
    assert len(modules) > 5
    found = [v for p in modules for v in _violations(p)]
    assert not found, "use medseq.data.synthetic.portable instead: " + ", ".join(found)


def test_the_guard_catches_what_it_should(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import numpy as np\nimport math\n"
                      "a = np.cos(x) + np.linalg.inv(m) @ v + y ** 2 + math.exp(1) + 10 ** 7\n")
    found = sorted(v.split()[-1] for v in _violations(sample))
    assert found == ["**", "@", "math.exp", "np.cos", "np.linalg"]


def test_portable_functions_are_accurate() -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(-300.0, 300.0, 20_000)
    np.testing.assert_allclose(portable.cos(x), np.cos(x), rtol=0, atol=1e-15)
    np.testing.assert_allclose(portable.sin(x), np.sin(x), rtol=0, atol=1e-15)
    single = x.astype(np.float32)
    assert portable.cos(single).dtype == np.float32
    np.testing.assert_allclose(portable.cos(single), np.cos(single.astype(np.float64)),
                               rtol=0, atol=3e-7)
    e = rng.uniform(-700.0, 700.0, 20_000)
    np.testing.assert_allclose(portable.exp(e), np.exp(e), rtol=1e-15)
    assert portable.exp(-800.0) == 0.0
    assert portable.exp(0.0) == 1.0
    positive = np.exp(rng.uniform(-700.0, 700.0, 20_000))
    np.testing.assert_allclose(portable.log(positive), np.log(positive), rtol=0, atol=1e-15)
    assert portable.log(1.0) == 0.0
    c = rng.uniform(-1e3, 1e3, 2_000)
    np.testing.assert_allclose(portable.cbrt(c), np.cbrt(c), rtol=1e-15)
    assert portable.cbrt(27.0) == 3.0
    assert portable.cbrt(-8.0) == -2.0
    a, b = rng.normal(size=(2, 20_000))
    np.testing.assert_allclose(portable.arctan2(a, b), np.arctan2(a, b), rtol=0, atol=1e-15)
    assert portable.arctan2(np.float32(1), np.float32(-1)).dtype == np.float32
    assert portable.power(1.5, 3) == 1.5 * 1.5 * 1.5


def test_portable_linear_algebra_matches_numpy() -> None:
    rng = np.random.default_rng(1)
    g = rng.normal(size=(3, 3))
    q = portable.orthonormal_columns(g)
    reference, r = np.linalg.qr(g)
    np.testing.assert_allclose(q, reference * np.sign(np.diag(r)), atol=1e-14)
    affine = np.eye(4)
    affine[:3, :3] = 2.0 * q
    affine[:3, 3] = [10.0, -5.0, 3.0]
    np.testing.assert_allclose(portable.affine_inverse(affine), np.linalg.inv(affine), atol=1e-14)
    assert portable.det3(affine[:3, :3]) == pytest.approx(np.linalg.det(affine[:3, :3]))
    b = rng.normal(size=(3, 4))
    np.testing.assert_allclose(portable.matmul(g, b), g @ b, atol=1e-14)
    points = rng.normal(size=(5, 3))
    np.testing.assert_allclose(portable.apply(affine, points),
                               points @ affine[:3, :3].T + affine[:3, 3], atol=1e-13)
    assert portable.norm([3.0, 4.0]) == 5.0


def test_gaussian_smooth_matches_scipy() -> None:
    from scipy import ndimage

    noise = np.random.default_rng(2).standard_normal((20, 16, 3)).astype(np.float32)
    for axis in (0, 1):
        ours = portable.gaussian_smooth(noise, 0.7, axis, truncate=3.0)
        theirs = ndimage.gaussian_filter1d(noise, 0.7, axis=axis, truncate=3.0)
        assert ours.dtype == np.float32
        np.testing.assert_allclose(ours, theirs, atol=1e-6)


def _narrow_simd_env() -> tuple[dict[str, str], list[str]]:
    """Environment that turns off every SIMD extension numpy dispatches to here (and, on
    x86-64, OpenBLAS's CPU-specific kernels): the path a CPU with no AVX2/AVX-512 takes."""
    dispatch, active = dispatched_simd()
    env = {**os.environ, "NPY_DISABLE_CPU_FEATURES": " ".join(dispatch)}
    if platform.machine().lower() in ("x86_64", "amd64"):
        env["OPENBLAS_CORETYPE"] = "Prescott"
        env["ATEN_CPU_CAPABILITY"] = "default"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env, active


def test_generator_gives_the_same_bits_on_a_narrower_simd_path() -> None:
    """Only meaningful where numpy dispatches to SIMD extensions beyond its baseline (any
    AVX2/AVX-512 x86 machine, ARM with dispatched NEON features): on a baseline-only CPU both
    runs take the same path and the test just checks that the digest is stable."""
    env, active = _narrow_simd_env()
    out = subprocess.run(
        [sys.executable, "-m", "tests.data.synthetic_digest"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=120, check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    child = json.loads(out.stdout)
    assert child["simd"] == [], f"could not turn off {child['simd']}"
    assert child["digest"] == generator_digest(), f"differs with {active} turned off"

"""The HTML report from a fake run and a tiny cache: every figure present, nothing external."""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from medseq.errors import UsageError
from medseq.report.build import ReportOptions, build_report
from medseq.report.figures import LesionSlices, montage_figure
from tests.fake_run import write_fake_cache, write_fake_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.figures: list[tuple[str, str]] = []
        self.current: str | None = None
        self.external: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "figure":
            self.current = a.get("data-figure")
        if tag == "img":
            self.figures.append((self.current or "", a.get("src") or ""))
        if tag == "script":
            self.scripts += 1
        for key in ("src", "href"):
            value = a.get(key) or ""
            if value and not value.startswith(("data:", "#")):
                self.external.append(value)


def parse(html: str) -> _Collector:
    collector = _Collector()
    collector.feed(html)
    return collector


def check_png(src: str) -> bytes:
    assert src.startswith("data:image/png;base64,")
    data = base64.b64decode(src.split(",", 1)[1])
    assert data.startswith(PNG_MAGIC)
    assert len(data) > 2000  # a real plot, not an empty canvas
    return data


@pytest.fixture(scope="module")
def run_with_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("report")
    cache = root / "cache"
    write_fake_cache(cache, ["p000", "p001", "p002"])
    write_fake_run(root / "run", n_patients=20, cache=cache)
    return root / "run"


def test_report_has_every_figure_non_empty_and_is_self_contained(run_with_cache: Path) -> None:
    html = build_report(run_with_cache, ReportOptions(max_patients=3, band_resamples=200))
    doc = parse(html)
    keys = [k for k, _ in doc.figures]
    for key in ("roc", "calibration", "confusion", "waterfall", "spider"):
        assert keys.count(key) == 1, key
    assert keys.count("trajectory") == 3
    assert keys.count("montage") == 3
    for _, src in doc.figures:
        check_png(src)
    assert doc.external == []
    assert doc.scripts == 0
    assert "Verdict:" in html
    assert "TRIPOD" in html
    assert "17 further patients" in html
    # RECIST tables: baseline + two follow-ups for each shown patient
    assert html.count('class="recist"') == 3
    assert re.search(r"<td class=\"resp-PR\">PR</td>", html)


def test_report_for_one_patient(run_with_cache: Path) -> None:
    html = build_report(run_with_cache, ReportOptions(patients=("p001",), band_resamples=100))
    assert "Patient p001" in html
    assert "Patient p000" not in html
    with pytest.raises(UsageError, match="nobody"):
        build_report(run_with_cache, ReportOptions(patients=("nobody",)))


def test_report_without_cache_still_has_cohort_figures(tmp_path: Path) -> None:
    write_fake_run(tmp_path / "run", n_patients=12)
    html = build_report(tmp_path / "run", ReportOptions(max_patients=2, band_resamples=100))
    keys = [k for k, _ in parse(html).figures]
    assert {"roc", "calibration", "confusion", "trajectory"} <= set(keys)
    assert "montage" not in keys


def test_montage_figure_shows_missing_timepoints() -> None:
    import numpy as np

    img = np.random.default_rng(0).normal(size=(20, 20)).astype(np.float32)
    msk = np.zeros((20, 20), bool)
    msk[5:10, 5:10] = True
    png = montage_figure([LesionSlices("T1", [img, None], [msk, None])], [0, 30])
    assert png.startswith(PNG_MAGIC)

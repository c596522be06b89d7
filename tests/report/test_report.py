"""The HTML report from a fake run and a tiny cache: every figure present, nothing external."""

from __future__ import annotations

import base64
import html as html_text
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from medseq.contracts.cache import read_manifest, write_manifest
from medseq.contracts.evaluation import EVALUATION_NAME, read_evaluation
from medseq.errors import UsageError
from medseq.report.build import ReportOptions, build_report
from medseq.report.figures import LesionSlices, montage_figure
from tests.fake_run import (
    PNG_MAGIC,
    skip_figure_rendering,
    write_fake_cache,
    write_fake_evaluation,
    write_fake_run,
)


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.figures: list[tuple[str, str]] = []
        self.current: str | None = None
        self.external: list[str] = []
        self.scripts = 0
        self.tables: dict[str, list[list[str]]] = {}
        self._table: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "figure":
            self.current = a.get("data-figure")
        if tag == "img":
            self.figures.append((self.current or "", a.get("src") or ""))
        if tag == "script":
            self.scripts += 1
        if tag == "table":
            self._table = a.get("id") or a.get("class") or ""
            self.tables.setdefault(self._table, [])
        if tag == "tr" and self._table is not None:
            self.tables[self._table].append([])
        if tag == "td" and self._table is not None:
            self._cell = []
        for key in ("src", "href"):
            value = a.get(key) or ""
            if value and not value.startswith(("data:", "#")):
                self.external.append(value)


    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None and self._table is not None:
            self.tables[self._table][-1].append("".join(self._cell))
            self._cell = None
        if tag == "table":
            self._table = None


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
    # As after `medseq evaluate --seed 7`: the report must show these numbers, not its own.
    write_fake_evaluation(root / "run", n_bootstrap=200, seed=7)
    return root / "run"


@pytest.fixture(scope="module")
def full_report(run_with_cache: Path) -> str:
    """The one report of these tests whose figures are really rendered."""
    return build_report(run_with_cache, ReportOptions(max_patients=3, band_resamples=200))


@pytest.fixture
def unrendered(monkeypatch: pytest.MonkeyPatch) -> None:
    skip_figure_rendering(monkeypatch)


def test_report_has_every_figure_non_empty_and_is_self_contained(full_report: str) -> None:
    html = full_report
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


def test_report_for_one_patient(run_with_cache: Path, unrendered: None) -> None:
    html = build_report(run_with_cache, ReportOptions(patients=("p001",), band_resamples=100))
    assert "Patient p001" in html
    assert "Patient p000" not in html
    with pytest.raises(UsageError, match="nobody"):
        build_report(run_with_cache, ReportOptions(patients=("nobody",)))


def test_report_without_cache_still_has_cohort_figures(tmp_path: Path, unrendered: None
                                                      ) -> None:
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


def test_report_numbers_are_those_of_evaluation_json(full_report: str, run_with_cache: Path
                                                     ) -> None:
    doc = read_evaluation(run_with_cache / EVALUATION_NAME)
    tables = parse(full_report).tables
    metrics = {row[0]: row[1:] for row in tables["metrics-table"] if row}
    model, base = doc.pooled.model, doc.pooled.baseline

    def auc(m: object) -> str:
        lo, hi = m.auc_ci  # type: ignore[attr-defined]
        return f"{m.auc:.3f} ({lo:.3f}-{hi:.3f})"  # type: ignore[attr-defined]

    assert metrics["AUC (95% CI)"] == [auc(model), auc(base)]
    assert metrics["Brier score (lower is better)"] == [f"{model.brier:.3f}", f"{base.brier:.3f}"]
    assert metrics["sensitivity"] == [f"{model.sensitivity:.3f}", f"{base.sensitivity:.3f}"]
    assert metrics["calibration slope (ideal 1)"][0] == f"{model.calibration.slope:.3f}"
    c = model.confusion
    assert metrics["confusion matrix"][0] == f"TP {c.tp} / FP {c.fp} / TN {c.tn} / FN {c.fn}"
    assert metrics["forecast MAE, next scan (mL)"][0] == f"{doc.pooled.forecast.mae_ml:.3f}"
    folds = [row for row in tables["fold-table"] if row]
    assert [row[:4] for row in folds] == [
        [str(f.fold), str(f.n_patients), str(f.n_responders), f"{f.model.auc:.3f}"]
        for f in doc.folds]
    assert f"<strong>Verdict:</strong> {html_text.escape(doc.verdict)}." in full_report
    assert f"{doc.n_patients} patients" in full_report
    # the stored document's settings (seed 7, 200 resamples), not a recomputation's defaults
    assert "(200 resamples, seed 7)" in full_report
    assert f"<code>{doc.created}</code>" in full_report


def test_report_shows_no_identifiers_without_keep_ids(tmp_path: Path, unrendered: None) -> None:
    names = {"p000": "DOE_JANE", "p001": "ROE_RICHARD"}
    cache, run = tmp_path / "cache", tmp_path / "run"
    write_fake_cache(cache, list(names.values()))
    manifest = read_manifest(cache)
    manifest.pseudonymised = False  # made with --keep-ids: original ids (a cache holds no dates)
    write_manifest(cache, manifest)
    write_fake_run(run, n_patients=4, n_folds=2, cache=cache)
    for name in ("predictions.jsonl", "splits.json"):
        text = (run / name).read_text()
        for fake, real in names.items():
            text = text.replace(f'"{fake}"', f'"{real}"')
        (run / name).write_text(text)
    write_fake_evaluation(run)

    html = build_report(run, ReportOptions(band_resamples=100))
    for leak in ("DOE", "ROE_", str(tmp_path)):
        assert leak not in html, leak
    shown = re.findall(r"<h3>Patient (\S+)</h3>", html)
    assert len(shown) == 4
    assert all(re.fullmatch(r"P[0-9a-f]{10}", s) for s in shown), shown

    kept = build_report(run, ReportOptions(band_resamples=100, keep_ids=True))
    for visible in ("Patient DOE_JANE", "Patient ROE_RICHARD", str(run.resolve())):
        assert visible in kept, visible


def test_report_reads_a_current_evaluation_and_recomputes_a_stale_one(tmp_path: Path) -> None:
    from medseq.report.inputs import load_evaluation

    run = tmp_path / "run"
    write_fake_run(run, n_patients=12)
    stored_path = write_fake_evaluation(run, n_bootstrap=100, seed=3)
    stored = read_evaluation(stored_path)
    assert load_evaluation(run) == stored
    # written before evaluation.json recorded its inputs: used as it is
    old = json.loads(stored_path.read_text())
    del old["inputs_sha256"]
    stored_path.write_text(json.dumps(old))
    assert load_evaluation(run).settings.bootstrap_seed == 3
    # the run changed since: evaluated again (default settings), with the new numbers
    rows = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    rows[0]["probability"] = 0.123
    (run / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    old["inputs_sha256"] = stored.inputs_sha256
    stored_path.write_text(json.dumps(old))
    fresh = load_evaluation(run)
    assert fresh.settings.bootstrap_seed == 0
    assert fresh.scored("p000").probability == 0.123  # type: ignore[union-attr]


def _trajectory_forecasts(monkeypatch: pytest.MonkeyPatch) -> list[list]:
    """Record the forecast each trajectory figure is asked to draw."""
    from medseq.report import figures

    drawn: list[list] = []

    def record(days: object, lesions: object, total: object, forecast: list) -> bytes:
        drawn.append(list(forecast))
        return PNG_MAGIC + b"stub"

    monkeypatch.setattr(figures, "trajectory_figure", record)
    return drawn


@pytest.mark.parametrize("noise", [0.1, 1.5])
def test_report_shows_the_forecast_only_where_it_beats_persistence(
        tmp_path: Path, unrendered: None, monkeypatch: pytest.MonkeyPatch, noise: float) -> None:
    run = tmp_path / "run"
    write_fake_run(run, n_patients=30, forecast_noise=noise, features=True)
    write_fake_evaluation(run, n_bootstrap=100)
    doc = read_evaluation(run / EVALUATION_NAME)
    persistence = doc.pooled.forecast.persistence
    assert persistence is not None
    drawn = _trajectory_forecasts(monkeypatch)
    html = build_report(run, ReportOptions(max_patients=2, band_resamples=100))
    tables = parse(html).tables
    forecast = {row[0]: row[1] for row in tables["forecast-table"] if row}
    assert forecast["persistence (last burden carried forward)"].startswith(
        f"{persistence.mae_ml:.2f} (")
    header = re.search(r'<table id="metrics-table">\s*<tr>(.*?)</tr>', html)
    assert header is not None
    assert "classical feature model" in header.group(1)
    assert len(drawn) == 2
    both = f"MAE {doc.pooled.forecast.mae_ml:.2f} mL against {persistence.mae_ml:.2f} mL"
    if noise < 1:
        assert persistence.beats is True
        assert all(drawn)  # forecasts drawn
        assert "The forecast beats persistence" in html
        assert both in html
    else:
        assert persistence.beats is False
        assert drawn == [[], []]  # no forecast drawn anywhere
        assert "The forecast does not beat persistence" in html
        assert both in html
        assert "not shown: the forecast does not beat persistence" in html


def test_outcome_sentence_follows_the_models_label() -> None:
    from medseq.contracts.run import LabelRecord, ModelCard, ModelConfig
    from medseq.report.text import _outcome_text

    def card(**label: object) -> ModelCard:
        return ModelCard(architecture=ModelConfig(measurements=False), label_names=[],
                         label=LabelRecord.model_validate(label))

    assert "after the first 2 scans" in _outcome_text(card(kind="best_after"), 2)
    assert "left out" in _outcome_text(card(kind="best_after"), 2)
    landmark = _outcome_text(card(kind="landmark", landmark_days=180,
                                  landmark_window_days=45), 2)
    assert "nearest day 180 (within 45 days)" in landmark
    assert "censored" in _outcome_text(card(kind="progression"), 2)
    assert "over all of a patient's scans" in _outcome_text(card(kind="overall"), None)

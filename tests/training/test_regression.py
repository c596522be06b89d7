"""CI regression: a few CPU epochs on a fixed cohort lower the loss and land near golden metrics.

The golden figures live in ``golden_train.json``; regenerate them (after a deliberate change of
the model or the loop) with ``MEDSEQ_UPDATE_GOLDEN=1 pytest tests/training/test_regression.py``
and say why in the commit.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from medseq.training.run import train_run
from tests.training.conftest import tiny_config
from tests.training.fake_cache import write_fake_cache

GOLDEN = Path(__file__).with_name("golden_train.json")
LOSS_RTOL = 0.05
"""Relative tolerance of losses: oneDNN kernels differ a little across CPUs and thread counts."""
AUC_ATOL = 0.15


def _cohort(root: Path) -> Path:
    # The bundled sample data needs a minute of preprocessing; this cohort of the same shape
    # (responders shrink, others grow; 2-4 scans, 1-3 lesions) is written directly as a cache.
    return write_fake_cache(root / "cache", n_patients=16, size=12, seed=11)


def _summary(run: Path) -> dict[str, object]:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    folds = sorted({r["fold"] for r in rows}, key=str)
    per_fold = {f: [r for r in rows if r["fold"] == f] for f in folds}
    predictions = [json.loads(x) for x in (run / "predictions.jsonl").read_text().splitlines()]
    from medseq.training.loop import roc_auc

    return {
        "first_train_loss": {f: r[0]["train_loss"] for f, r in per_fold.items()},
        "last_train_loss": {f: r[-1]["train_loss"] for f, r in per_fold.items()},
        "oof_auc": roc_auc([p["responder"] for p in predictions],
                           [p["probability"] for p in predictions]),
    }


def test_few_epochs_lower_the_loss_and_match_golden_metrics(tmp_path: Path) -> None:
    cache = _cohort(tmp_path)
    run = tmp_path / "run"
    config = tiny_config(epochs=6, folds=2, early_stopping={"patience": 6})
    train_run(cache, run, config, progress=False)
    summary = _summary(run)
    first, last = summary["first_train_loss"], summary["last_train_loss"]
    assert isinstance(first, dict) and isinstance(last, dict)
    for fold in first:
        assert last[fold] < first[fold], f"fold {fold}: loss did not fall"
    if os.environ.get("MEDSEQ_UPDATE_GOLDEN"):
        GOLDEN.write_text(json.dumps(summary, indent=2) + "\n")
        pytest.skip("golden metrics rewritten")
    golden = json.loads(GOLDEN.read_text())
    for key in ("first_train_loss", "last_train_loss"):
        for fold, value in golden[key].items():
            assert summary[key][fold] == pytest.approx(value, rel=LOSS_RTOL), (key, fold)  # type: ignore[index]
    assert summary["oof_auc"] == pytest.approx(golden["oof_auc"], abs=AUC_ATOL)

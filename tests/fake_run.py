"""A fake training run directory (and optionally a small cache) for evaluate/report tests.

It follows docs/architecture.md so these tests do not need a trained model.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medseq.contracts.run import (
    ModelCard,
    ModelConfig,
    ModelInputs,
    Splits,
    write_card,
    write_splits,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_fake_run(
    run_dir: Path,
    *,
    n_patients: int = 40,
    n_folds: int = 5,
    seed: int = 0,
    model_strength: float = 2.0,
    cache: Path | None = None,
    forecast_noise: float = 0.1,
    features: bool = False,
    progression: bool = False,
    determined: dict[str, str] | None = None,
) -> list[dict]:
    """Write predictions.jsonl, splits.json, model.json, config.yaml; return the rows.

    ``forecast_noise``: relative error of the forecast (1.0 makes it lose to persistence);
    ``features``: classical measurement features on every line (one informative HU change,
    missing values, and a key only half the lines carry); ``progression``: ``progression``
    labels (event = label, a follow-up time, the model's risk); ``determined``: patients
    ``splits.json`` lists as already decided by the observed scans.
    """
    rng = np.random.default_rng(seed)
    extra = np.random.default_rng(seed + 1000)  # features and times: the other draws unchanged
    run_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    folds: dict[str, int] = {}
    for i in range(n_patients):
        pid = f"p{i:03d}"
        label = int(i % 2 == 0)
        v0 = float(rng.uniform(5, 30))
        shrink = rng.normal(-0.4 if label else 0.1, 0.25)
        v1 = max(v0 * (1 + shrink), 0.1)
        v2 = max(v1 * (1 + shrink), 0.1)
        burden = [v0, v1, v2]
        logit = model_strength * (label - 0.5) + rng.normal(0, 1.0)
        prob = float(1 / (1 + np.exp(-logit)))
        fold = i % n_folds
        folds[pid] = fold
        rows.append({
            "patient_id": pid,
            "fold": fold,
            "label": label,
            "probability": prob,
            "observed": 3,
            "days": [0, 60, 120],
            "burden_ml": burden,
            "forecast_ml": [v * (1 + rng.normal(0, forecast_noise)) for v in (v1, v2, v2)],
        })
        if features:
            rows[-1]["features"] = {
                "log_burden_ratio": float(np.log(v1 / v0)),
                "mean_hu_change": float(-8.0 * label + extra.normal(0, 4.0)),
                "rim_hu_change": float("nan") if i % 7 == 3 else float(extra.normal(0, 5.0)),
                "lesion_count": float(1 + i % 4),
                **({"core_hu_change": 1.0} if i % 2 else {}),
            }
        if progression:
            rows[-1].update(time_days=float(np.round(extra.uniform(30, 400))),
                            event=bool(label), risk=float(logit))
    (run_dir / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    write_splits(run_dir, Splits(seed=0, folds_count=n_folds, folds=folds,
                                 cache=str(cache) if cache else None,
                                 label_kind="progression" if progression else "overall",
                                 observe=2 if progression or features else None,
                                 determined=determined or {}))
    write_card(run_dir, ModelCard(
        format=1, medseq_version="0.1.0", config_hash="sha256:abc",
        architecture=ModelConfig(encoder="small", embed=64, pooling="attention", cell="lstm",
                                 hidden=64, time="concat", task="binary", measurements=False),
        label_names=["non-responder", "responder"], inputs=ModelInputs(observe=2),
        preprocess_config_hash="sha256:cfg"))
    (run_dir / "config.yaml").write_text(f"cache: {cache}\nseed: 0\nfolds: {n_folds}\n")
    (run_dir / "metrics.jsonl").write_text(
        "".join(json.dumps({"fold": f, "epoch": e, "train_loss": 1.0 / (e + 1),
                            "val_loss": 1.2 / (e + 1), "val_auc": 0.6 + 0.05 * e})
                + "\n" for f in range(n_folds) for e in range(3))
    )
    return rows


def write_fake_cache(cache_dir: Path, patient_ids: list[str], *, seed: int = 0) -> None:
    """A tiny cache: per patient 3 registered scans (identity transforms) with 2 spheres each."""
    import nibabel as nib

    from medseq.contracts.cache import (
        CacheManifest,
        PatientRecord,
        TargetRecord,
        TimepointRecord,
        write_manifest,
    )

    rng = np.random.default_rng(seed)
    cache_dir.mkdir(parents=True, exist_ok=True)
    (cache_dir / "salt.key").write_text("ab" * 32 + "\n")
    affine = np.diag([1.5, 1.5, 2.5, 1.0])
    affine[:3, 3] = [-30.0, -30.0, -25.0]
    shape = (40, 40, 20)
    grid = np.stack(np.meshgrid(*(np.arange(s) for s in shape), indexing="ij"), axis=-1)
    world = grid @ affine[:3, :3].T + affine[:3, 3]
    patients = {}
    for n, pid in enumerate(patient_ids):
        (cache_dir / pid).mkdir(exist_ok=True)
        factor = 0.6 if n % 2 == 0 else 1.3
        centres = [np.array([-10.0, 5.0, 0.0]), np.array([12.0, -8.0, 5.0])]
        radii = [9.0, 7.0]
        tps = []
        for t, days in enumerate([0, 60, 120]):
            image = rng.normal(0, 20, shape).astype(np.float32)
            mask = np.zeros(shape, dtype=np.uint8)
            for c, r in zip(centres, radii, strict=False):
                inside = np.linalg.norm(world - c, axis=-1) <= r * factor**t
                mask[inside] = 1
                image[inside] += 80
            nib.save(nib.Nifti1Image(image, affine), cache_dir / pid / f"t{t:02d}_image.nii")
            nib.save(nib.Nifti1Image(mask, affine), cache_dir / pid / f"t{t:02d}_mask.nii")
            tps.append(TimepointRecord(
                index=t, days=days, days_since_previous=60 if t else 0, file_count=1,
                content_hash=f"h{t}", image=f"{pid}/t{t:02d}_image.nii",
                mask=f"{pid}/t{t:02d}_mask.nii", mask_native=f"{pid}/t{t:02d}_mask.nii",
                native_affine=affine.tolist(),
                lesion_volume_ml=float(mask.sum() * 1.5 * 1.5 * 2.5 / 1000),
            ))
        patients[pid] = PatientRecord(
            patient_id=pid, has_mask=True, timepoints=tps, label=int(n % 2 == 0),
            targets=[TargetRecord(index=i, centroid_mm=c.tolist(), volume_ml=1.0)
                     for i, c in enumerate(centres)],
        )
    manifest = CacheManifest(medseq_version="0.1.0", config={"crop_size": 32},
                             config_hash="sha256:cfg",
                             fingerprint={"target_spacing": [1.5, 1.5, 2.5]},
                             patients=patients)
    write_manifest(cache_dir, manifest)


def write_fake_evaluation(run_dir: Path, *, n_bootstrap: int = 200, seed: int = 0) -> Path:
    """Evaluate the run as ``medseq evaluate`` does and store ``RUN/evaluation.json``."""
    from medseq.contracts.evaluation import EVALUATION_NAME, write_evaluation
    from medseq.evaluation.evaluate import EvaluationSettings, evaluate_run

    doc = evaluate_run(run_dir, EvaluationSettings(n_bootstrap=n_bootstrap, seed=seed))
    return write_evaluation(run_dir / EVALUATION_NAME, doc)


def skip_figure_rendering(monkeypatch: pytest.MonkeyPatch) -> None:
    """Replace every figure of the report by a stub PNG signature, for tests about the report's
    text (drawing is the slow part; tests/report/test_report.py renders the real ones)."""
    from medseq.report import figures

    for name in dir(figures):
        if name.endswith("_figure"):
            monkeypatch.setattr(figures, name, lambda *args, **kwargs: PNG_MAGIC + b"stub")

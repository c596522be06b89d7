"""The report's figures, drawn with matplotlib's Agg backend and returned as PNG bytes.

Each function takes plain numbers (no run directory, no cache) and returns one PNG, so the
figures can be tested alone and embedded inline in the HTML. Colours follow one convention
everywhere: responders (CR/PR) blue, stable disease grey, progression red; the model orange,
the size-only baseline grey.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from medseq.contracts.evaluation import CalibrationBinRecord, ConfusionRecord

if TYPE_CHECKING:
    from matplotlib.figure import Figure

RESPONSE_COLOURS = {"CR": "#1f5fa8", "PR": "#5b9bd5", "SD": "#9e9e9e", "PD": "#d62728",
                    "NE": "#dddddd"}
MODEL_COLOUR = "#e6730f"
BASELINE_COLOUR = "#6b6b6b"
DPI = 100


@dataclass(frozen=True)
class RocInput:
    """One classifier's ROC and its bootstrap band."""

    name: str
    fpr: Sequence[float]
    tpr: Sequence[float]
    band_fpr: Sequence[float]
    band_lower: Sequence[float]
    band_upper: Sequence[float]
    auc: float
    auc_ci: tuple[float, float]


@dataclass(frozen=True)
class LesionSlices:
    """One tracked lesion's axial slice window at every timepoint (None where not imaged)."""

    lesion_id: str
    images: Sequence[np.ndarray | None]
    masks: Sequence[np.ndarray | None]
    pixel_aspect: float = 1.0
    """Row spacing / column spacing of the slices as shown."""
    window: tuple[float, float] | None = None
    """Display range shared by the row (None: 1st-99th percentile of the row's pixels)."""


def roc_figure(model: RocInput, baseline: RocInput | None) -> bytes:
    """ROC of the model with its bootstrap 95% band, beside the size-only baseline's."""
    fig, ax = _figure(4.8, 4.5)
    curves = [(baseline, BASELINE_COLOUR), (model, MODEL_COLOUR)] if baseline else [
        (model, MODEL_COLOUR)]
    for roc, colour in curves:
        if roc is None:
            continue
        ax.fill_between(roc.band_fpr, roc.band_lower, roc.band_upper, step="post", color=colour,
                        alpha=0.18, linewidth=0)
        lo, hi = roc.auc_ci
        ax.plot(roc.fpr, roc.tpr, drawstyle="steps-post", color=colour, linewidth=2,
                label=f"{roc.name}: AUC {roc.auc:.2f} (95% CI {lo:.2f}-{hi:.2f})")
    ax.plot([0, 1], [0, 1], linestyle=":", color="#999999", linewidth=1)
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel("1 - specificity (false positive rate)")
    ax.set_ylabel("sensitivity (true positive rate)")
    ax.set_title("ROC, out-of-fold (shaded: bootstrap 95% band)")
    ax.legend(loc="lower right", fontsize=8)
    return _png(fig)


def calibration_figure(curves: Mapping[str, Sequence[CalibrationBinRecord]]) -> bytes:
    """Reliability diagram: observed responder fraction against mean predicted probability.

    ``curves`` maps a name (``model``, ``baseline``) to the ``calibration.curve`` bins of
    ``evaluation.json``; marker area follows the number of patients in the bin.
    """
    fig, ax = _figure(4.8, 4.5)
    ax.plot([0, 1], [0, 1], linestyle=":", color="#999999", linewidth=1, label="ideal")
    for name, bins in curves.items():
        colour = MODEL_COLOUR if name == "model" else BASELINE_COLOUR
        if not bins:
            continue
        x = [b.mean_predicted for b in bins]
        y = [b.observed_fraction for b in bins]
        n = np.array([b.count for b in bins], dtype=float)
        ax.plot(x, y, color=colour, linewidth=1.5, label=name)
        ax.scatter(x, y, s=20 + 180 * n / max(n.max(), 1), color=colour, alpha=0.7,
                   edgecolors="white", linewidths=0.5)
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_aspect("equal")
    ax.set_xlabel("mean predicted probability of response")
    ax.set_ylabel("observed fraction of responders")
    ax.set_title("Calibration (marker size: patients per bin)")
    ax.legend(loc="upper left", fontsize=8)
    return _png(fig)


def confusion_figure(confusion: Mapping[str, ConfusionRecord], threshold: float) -> bytes:
    """Confusion matrices side by side (``{"model": ..., "baseline": ...}``)."""
    names = list(confusion)
    fig, axes = _figure(3.1 * len(names), 3.2, ncols=len(names))
    for ax, name in zip(np.atleast_1d(axes), names, strict=True):
        cm = confusion[name]
        grid = np.array([[cm.tn, cm.fp], [cm.fn, cm.tp]])
        ax.imshow(grid, cmap="Blues", vmin=0, vmax=max(int(grid.max()), 1))
        for (r, c), value in np.ndenumerate(grid):
            ax.text(c, r, str(value), ha="center", va="center", fontsize=14,
                    color="white" if value > grid.max() / 2 else "black")
        ax.set_xticks([0, 1], ["non-resp.", "responder"])
        ax.set_yticks([0, 1], ["non-resp.", "responder"])
        ax.set_xlabel("predicted")
        ax.set_ylabel("actual (RECIST)")
        ax.set_title(f"{name} (p >= {threshold:g})", fontsize=10)
    return _png(fig)


def waterfall_figure(best_change_pct: Mapping[str, float], response: Mapping[str, str]) -> bytes:
    """Best % change of the SOD from baseline per patient, sorted, coloured by best response."""
    ids = sorted(best_change_pct, key=lambda pid: -best_change_pct[pid])
    values = [best_change_pct[pid] for pid in ids]
    fig, ax = _figure(max(4.8, 0.12 * len(ids) + 2), 3.8)
    colours = [RESPONSE_COLOURS.get(response.get(pid, "NE"), "#dddddd") for pid in ids]
    ax.bar(range(len(ids)), values, color=colours, width=0.85)
    ax.axhline(20, color=RESPONSE_COLOURS["PD"], linestyle="--", linewidth=0.8)
    ax.axhline(-30, color=RESPONSE_COLOURS["PR"], linestyle="--", linewidth=0.8)
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_xticks([])
    ax.set_xlabel(f"patients ({len(ids)}), sorted")
    ax.set_ylabel("best change of SOD from baseline (%)")
    ax.set_title("Waterfall: best change of the SOD")
    _response_legend(ax, {response.get(pid, "NE") for pid in ids})
    return _png(fig)


def spider_figure(
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]], response: Mapping[str, str]
) -> bytes:
    """% change of the SOD from baseline over days, one line per patient."""
    fig, ax = _figure(4.8, 3.8)
    for pid, (days, change) in series.items():
        ax.plot(days, change, color=RESPONSE_COLOURS.get(response.get(pid, "NE"), "#999999"),
                linewidth=1.0, alpha=0.8, marker="o", markersize=2.5)
    ax.axhline(20, color=RESPONSE_COLOURS["PD"], linestyle="--", linewidth=0.8)
    ax.axhline(-30, color=RESPONSE_COLOURS["PR"], linestyle="--", linewidth=0.8)
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_xlabel("days from baseline")
    ax.set_ylabel("change of SOD from baseline (%)")
    ax.set_title("Spider plot: every patient over time")
    _response_legend(ax, {response.get(pid, "NE") for pid in series})
    return _png(fig)


def trajectory_figure(
    days: Sequence[float],
    lesion_volumes: Mapping[str, Sequence[float | None]],
    total_ml: Sequence[float | None],
    forecast_ml: Sequence[float | None],
) -> bytes:
    """Each lesion's volume over time, the total burden, and the model's next-scan forecast.

    ``forecast_ml[t]`` is the forecast made at scan t for scan t+1; it is drawn at the next
    scan's day (or, after the last scan, one median interval later) as a dashed segment.
    """
    fig, ax = _figure(5.4, 3.6)
    d = np.asarray(days, dtype=float)
    for name, vols in lesion_volumes.items():
        ax.plot(d, _nan(vols), marker="o", markersize=3, linewidth=1, alpha=0.8, label=name)
    ax.plot(d, _nan(total_ml), color="black", linewidth=2, marker="s", markersize=4,
            label="total burden")
    if forecast_ml:
        step = float(np.median(np.diff(d))) if d.size > 1 else 60.0
        for t, forecast in enumerate(forecast_ml):
            if forecast is None or t >= d.size:
                continue
            target_day = d[t + 1] if t + 1 < d.size else d[t] + step
            start = total_ml[t] if t < len(total_ml) else None
            ax.plot([d[t], target_day], [np.nan if start is None else start, forecast],
                    color=MODEL_COLOUR, linestyle="--", linewidth=1.2)
            ax.scatter([target_day], [forecast], color=MODEL_COLOUR, marker="D", s=22, zorder=3,
                       label="forecast (next scan)" if t == 0 else None)
    ax.set_xlabel("days from baseline")
    ax.set_ylabel("volume (mL)")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7, loc="best", ncol=2)
    ax.set_title("Lesion volumes and forecast" if forecast_ml else "Lesion volumes")
    return _png(fig)


def montage_figure(lesions: Sequence[LesionSlices], days: Sequence[int]) -> bytes:
    """Grid of axial slices: one row per tracked lesion, one column per timepoint, mask outlined."""
    rows = max(len(lesions), 1)
    cols = max(len(days), 1)
    fig, axes = _figure(1.7 * cols + 0.6, 1.75 * rows + 0.3, nrows=rows, ncols=cols,
                        squeeze=False)
    for r, lesion in enumerate(lesions):
        lo, hi = lesion.window or _row_window(lesion.images)
        for c in range(cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            image = lesion.images[c] if c < len(lesion.images) else None
            mask = lesion.masks[c] if c < len(lesion.masks) else None
            if image is None:
                ax.set_facecolor("#f0f0f0")
                ax.text(0.5, 0.5, "not imaged", ha="center", va="center", fontsize=7,
                        transform=ax.transAxes)
            else:
                ax.imshow(image, cmap="gray", vmin=lo, vmax=max(hi, lo + 1e-6),
                          aspect=lesion.pixel_aspect, interpolation="nearest")
                if mask is not None and mask.any() and not mask.all():
                    ax.contour(mask.astype(float), levels=[0.5], colors=["#ffd400"],
                               linewidths=1.0)
            if r == 0:
                ax.set_title(f"day {days[c]}" if c < len(days) else "", fontsize=8)
            if c == 0:
                ax.set_ylabel(lesion.lesion_id, fontsize=8)
    return _png(fig)


def _row_window(images: Sequence[np.ndarray | None]) -> tuple[float, float]:
    """One display range for a lesion's row, so brightness is comparable across timepoints."""
    pixels = [im.ravel() for im in images if im is not None and im.size]
    if not pixels:
        return 0.0, 1.0
    lo, hi = np.percentile(np.concatenate(pixels), [1, 99])
    return float(lo), float(max(hi, lo + 1e-6))


def _figure(width: float, height: float, **subplots: Any) -> tuple[Figure, Any]:
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    # A bare Figure (no pyplot) is never registered with a GUI backend or kept alive globally.
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    axes = fig.subplots(**subplots)
    return fig, axes


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def _response_legend(ax: Any, present: set[str]) -> None:
    from matplotlib.patches import Patch

    handles = [Patch(color=RESPONSE_COLOURS[name], label=name)
               for name in ("CR", "PR", "SD", "PD", "NE") if name in present]
    if handles:
        ax.legend(handles=handles, fontsize=8, loc="best", title="best response",
                  title_fontsize=8)


def _nan(values: Sequence[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=float)

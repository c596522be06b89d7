"""Inference: a trained tracker segments each baseline lesion on a follow-up.

For each baseline lesion: crop the follow-up on its own grid around the propagated point (the
baseline centroid carried by the registration, :mod:`medseq.tracker.views`), add the prompt,
the baseline crop and the lesion's baseline mask sampled onto that crop, predict, threshold,
and keep the connected component that contains the prompt voxel, else the nearest one within
``search_mm``. The confidence is the mean probability inside the kept component. An empty
output is **not found** unless no voxel of the crop reaches ``vanish_max_probability``: then
the network is confident the lesion is **gone** (measured 0 mm, as RECIST does for a
disappeared target).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medseq.errors import CacheError
from medseq.io.atomic import atomic_path, write_text_atomic
from medseq.tracker.config import TrackerCard
from medseq.tracker.prompt import crop, line_prompt, paste, point_prompt

if TYPE_CHECKING:
    import torch

WEIGHTS_NAME = "tracker.safetensors"
DETECTOR_NAME = "detector.safetensors"
CARD_NAME = "tracker.json"
FOUND, VANISHED, NOT_FOUND = "found", "vanished", "not_found"
FLIPS = ((), (0,), (1,), (2,), (0, 1), (0, 2), (1, 2), (0, 1, 2))
"""Axes of a crop flipped for :meth:`Tracker.predict` ``flips``."""


@dataclass(frozen=True)
class LesionOutcome:
    """One baseline lesion on one follow-up."""

    status: str
    """``found``, ``vanished`` (confidently gone) or ``not_found``."""
    mask: np.ndarray | None
    """Boolean mask on the follow-up's grid (None unless found)."""
    confidence: float
    """Mean probability inside the mask (found), else 1 - the crop's maximum probability
    (1 for a lesion drawn on empty lung, :func:`empty_in_image`)."""
    max_probability: float


EMPTY_HU = -190.0
"""CT: a tracked lesion none of whose voxels reaches this is drawn on nothing but air or
aerated lung (in the default window, within 10 HU of its floor): it is called vanished."""


def empty_in_image(outcome: LesionOutcome, image: np.ndarray, empty_below: float
                   ) -> LesionOutcome:
    """``outcome`` as vanished (confidence 1) when it was found but no voxel of the follow-up
    ``image`` inside its mask reaches ``empty_below`` (cache units); else unchanged.

    The network draws a lesion where the prior puts it even over empty lung (on the tracking
    benchmark's training cohort, 14 of 19 vanished lung lesions); a soft-tissue lesion always
    has a voxel above this level, a remnant below it is invisible in the cache's window."""
    if outcome.status != FOUND or outcome.mask is None:
        return outcome
    if float(image[outcome.mask].max()) >= empty_below:
        return outcome
    return LesionOutcome(VANISHED, None, 1.0, outcome.max_probability)


class Tracker:
    """A trained tracker (``tracker.safetensors`` + ``tracker.json``) ready to predict."""

    def __init__(self, card: TrackerCard, network: torch.nn.Module, device: torch.device,
                 detector: torch.nn.Module | None = None) -> None:
        self.card = card
        self.config = card.config
        self.network = network
        self.device = device
        self.detector = detector
        """The separate new-lesion detector (None: the tracker detects without a prompt)."""

    @classmethod
    def load(cls, run_dir: Path, *, device: str = "cpu") -> Tracker:
        """Load a tracker directory; a one-line CacheError when it is not one."""
        import torch

        from medseq.tracker.network import build_network

        run_dir = Path(run_dir)
        card = read_card(run_dir)
        network = _load_weights(build_network(card.config), run_dir / WEIGHTS_NAME)
        detector = None
        if card.config.detector == "separate":
            from medseq.tracker.network import build_detector

            detector = _load_weights(build_detector(card.config), run_dir / DETECTOR_NAME)
        target = torch.device(device)
        network.to(target).eval()
        if detector is not None:
            detector.to(target).eval()
        return cls(card, network, target, detector)

    def predict_detection(self, inputs: np.ndarray, *, batch: int = 16) -> np.ndarray:
        """Probabilities [N, S, S, S] that a voxel is lesion, for unprompted windows [N, 4, S,
        S, S] (prompt and baseline-mask channels zero): the separate detector when there is
        one, else the tracker itself."""
        if self.detector is None:
            return self.predict(inputs, batch=batch)
        from medseq.tracker.network import DETECTOR_CHANNELS

        return self.predict(inputs, batch=batch, network=self.detector,
                            channels=DETECTOR_CHANNELS)

    def predict(self, inputs: np.ndarray, *, batch: int = 16, flips: bool = False,
                network: torch.nn.Module | None = None,
                channels: Sequence[int] | None = None) -> np.ndarray:
        """Probabilities [N, S, S, S] for inputs [N, 4, S, S, S] (image channels on the cache's
        scale; :func:`medseq.tracker.intensity.standardise_inputs` rescales them); ``flips``:
        the mean over the 8 flips of each crop."""
        if flips:
            total = np.zeros((len(inputs), *inputs.shape[2:]), dtype=np.float32)
            for axes in FLIPS:
                flipped = np.flip(inputs, tuple(a + 2 for a in axes)) if axes else inputs
                probability = self.predict(np.ascontiguousarray(flipped), batch=batch,
                                           network=network, channels=channels)
                total += (np.flip(probability, tuple(a + 1 for a in axes)) if axes
                          else probability)
            return total / len(FLIPS)
        import torch

        from medseq.tracker.intensity import standardise_inputs

        inputs = standardise_inputs(inputs, self.config, self.card.preprocess_config)
        if channels is not None:
            inputs = inputs[:, list(channels)]
        model = self.network if network is None else network
        out = []
        with torch.inference_mode():
            for start in range(0, len(inputs), batch):
                x = torch.from_numpy(np.ascontiguousarray(inputs[start:start + batch]))
                enabled = self.device.type == "cuda" and self.config.amp == "auto"
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=enabled):
                    logits = model(x.to(self.device))
                out.append(torch.sigmoid(logits.float())[:, 0].cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0,) + (self.config.crop_size,) * 3)


def _load_weights(network: torch.nn.Module, path: Path) -> torch.nn.Module:
    """``network`` with the safetensors weights at ``path``; a one-line CacheError if not."""
    from safetensors.torch import load_file

    try:
        network.load_state_dict(load_file(str(path)))
    except Exception as err:
        raise CacheError(f"unreadable tracker weights ({' '.join(str(err).split())[:200]})",
                         path=path) from None
    return network


def read_card(run_dir: Path) -> TrackerCard:
    path = Path(run_dir) / CARD_NAME
    if not path.is_file():
        raise CacheError("not a tracker: no tracker.json (train one with medseq "
                         "train-tracker)", path=run_dir)
    try:
        return TrackerCard.model_validate_json(path.read_text(encoding="utf-8"))
    except Exception as err:
        raise CacheError(f"invalid tracker.json ({' '.join(str(err).split())[:200]})",
                         path=path) from None


def save_tracker(run_dir: Path, state: dict[str, Any], card: TrackerCard,
                 detector: dict[str, Any] | None = None) -> None:
    """Write the weights (safetensors: the tracker's, then the separate detector's) then the
    card (JSON), each atomically."""
    from safetensors.torch import save_file

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    for name, weights in ((WEIGHTS_NAME, state), (DETECTOR_NAME, detector)):
        if weights is None:
            continue
        tensors = {k: v.detach().cpu().contiguous() for k, v in weights.items()}
        with atomic_path(run_dir / name) as tmp:
            save_file(tensors, str(tmp), metadata={"format": "pt"})
    write_text_atomic(run_dir / CARD_NAME, card.model_dump_json(indent=2) + "\n")


def track_lesions(tracker: Tracker, follow_up: np.ndarray, baseline: np.ndarray,
                  lesions: Sequence[np.ndarray], spacing: np.ndarray,
                  to_view: np.ndarray | None = None) -> list[LesionOutcome]:
    """Segment every baseline lesion (boolean masks on the registered grid) on a follow-up.

    ``follow_up`` lies on its own grid, reached from the registered one by ``to_view``
    (registered voxel index -> follow-up voxel index; None: the registered grid itself) and
    ``spacing`` is its spacing; the outcome masks are on that grid.
    """
    from medseq.tracker.refine import FitLevels, fit_carried, scaled_view
    from medseq.tracker.views import apply, sample_crop

    config = tracker.config
    levels = (FitLevels.for_cache(tracker.card.preprocess_config, config.scale_prior_sd)
              if config.prior_refine == "scale" and config.track_prior != "point" else None)
    size = config.crop_size
    matrix = np.eye(4) if to_view is None else np.asarray(to_view, dtype=np.float64)
    points = [apply(matrix, np.argwhere(mask).mean(axis=0)) for mask in lesions]
    centres = [np.rint(p).astype(int) for p in points]
    inputs = np.zeros((len(lesions), 4, size, size, size), dtype=np.float32)
    for n, (mask, point, centre) in enumerate(zip(lesions, points, centres, strict=True)):
        inputs[n, 0] = crop(follow_up, centre, size)
        if config.track_prior == "point":
            inputs[n, 2] = inputs[n, 0]
        else:
            prior = matrix
            if levels is not None:
                fit = fit_carried(follow_up, baseline, mask, matrix, point, size, levels)
                prior = scaled_view(matrix, point, fit)
                points[n] = point + np.asarray(fit.shift)  # the prompt follows the prior
            inputs[n, 2] = sample_crop(baseline, prior, centre, size, order=1)
            inputs[n, 3] = sample_crop(mask, prior, centre, size, order=1)
        inputs[n, 1] = point_prompt(size, points[n] - centre + size // 2, spacing,
                                    config.prompt_sigma_mm)
    probabilities = (tracker.predict(inputs, flips=config.flip_average) if len(lesions)
                     else np.zeros((0, 1, 1, 1)))
    return [_outcome(prob, centre, point - centre + size // 2, follow_up.shape, spacing, config)
            for prob, centre, point in zip(probabilities, centres, points, strict=True)]


def segment_prompt(tracker: Tracker, image: np.ndarray, point: np.ndarray,
                   spacing: np.ndarray, line: np.ndarray | None = None) -> LesionOutcome:
    """A baseline lesion from a point or RECIST line (voxel coordinates): prompt only."""
    config = tracker.config
    size = config.crop_size
    centre = np.rint(point).astype(int)
    local = point - centre + size // 2
    x = np.zeros((1, 4, size, size, size), dtype=np.float32)
    x[0, 0] = crop(image, centre, size)
    x[0, 2] = x[0, 0]
    if line is None:
        x[0, 1] = point_prompt(size, local, spacing, config.prompt_sigma_mm)
    else:
        x[0, 1] = line_prompt(size, line[0] - centre + size // 2, line[1] - centre + size // 2,
                              spacing, config.prompt_sigma_mm)
    return _outcome(tracker.predict(x, flips=config.flip_average)[0], centre, local,
                    image.shape, spacing, config)


def _outcome(prob: np.ndarray, centre: np.ndarray, local: np.ndarray, shape: tuple[int, ...],
             spacing: np.ndarray, config: Any) -> LesionOutcome:
    from scipy import ndimage

    peak = float(prob.max())
    components, count = ndimage.label(prob >= config.threshold, structure=np.ones((3, 3, 3)))
    chosen = 0
    voxel = tuple(int(np.clip(round(v), 0, s - 1)) for v, s in zip(local, prob.shape,
                                                                   strict=True))
    if count:
        chosen = int(components[voxel])
        if not chosen:
            best = np.inf
            for j in range(1, count + 1):
                d = np.sqrt((((np.argwhere(components == j) - local) * spacing) ** 2).sum(1)).min()
                if d <= config.search_mm and d < best:
                    chosen, best = j, d
    if not chosen:
        status = VANISHED if peak < config.vanish_max_probability else NOT_FOUND
        return LesionOutcome(status, None, 1.0 - peak, peak)
    kept = components == chosen
    mask = np.zeros(shape, dtype=bool)
    paste(mask, kept, centre)
    return LesionOutcome(FOUND, mask, float(prob[kept].mean()), peak)

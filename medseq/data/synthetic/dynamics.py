"""Tumour growth under treatment, and the early imaging cues that foreshadow response.

Each lesion's log-volume ``y = ln V`` follows Gompertz growth with a treatment kill term::

    dy/dt = a (ln K - y) - kappa(t)
    kappa(t) = KILL_MAX * S**KILL_EXPONENT * onset(t) * resistance(t)

``S = sigmoid(SENSITIVITY_GAIN * s_lesion)`` where ``s_lesion = s_patient + N(0, LESION_SD)``;
``onset`` ramps from 0 to 1 over ``ONSET_RAMP_DAYS`` after a per-patient delay, and
``resistance`` decays the kill with time constant ``RESISTANCE_DAYS`` after a per-patient
resistance time (some responders later progress). A lesion whose volume falls below
``VANISH_ML`` is gone for good. New lesions arrive as a Poisson process whose rate falls with the
patient's sensitivity. Cues: by the first follow-up a sensitive lesion's rim enhancement drops
(in proportion to its sensitivity) and its necrotic core grows (in proportion to sensitivity times
:func:`durability`: how promptly and how long the treatment will act), each with noise. Shrinkage
lags behind the cues (delayed onset), so the cues carry information that size does not. The
constants below were tuned with ``benchmarks/sample_data_difficulty.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medseq.data.synthetic import portable
from medseq.data.synthetic.lesions import LESION_HU, Appearance

KILL_MAX = 0.065
"""Largest kill rate (per day) of a fully sensitive lesion."""
KILL_EXPONENT = 3
"""The kill rises steeply with sensitivity (``S ** KILL_EXPONENT``): few partial responders."""
SENSITIVITY_GAIN = 8.0
LESION_SD = 0.15
"""Spread of a lesion's sensitivity around its patient's."""
ONSET_DELAY_DAYS = (15.0, 100.0)
ONSET_RAMP_DAYS = 30.0
RESISTANCE_MEAN_DAYS = 260.0
RESISTANCE_MIN_DAYS = 90.0
RESISTANCE_DAYS = 45.0
DOUBLING_DAYS = (90.0, 200.0)
"""Range (log-uniform) of untreated volume doubling times at baseline size."""
CAPACITY_ML = (60.0, 110.0)
VANISH_ML = 0.06
NEW_LESION_RATE = 1.0 / 1500.0
"""Baseline hazard (per day) of a new lesion, scaled by exp(-NEW_LESION_GAIN * s_patient)."""
NEW_LESION_GAIN = 1.0
MAX_NEW_LESIONS = 2
NEW_LESION_ML = (0.3, 0.9)
CUE_DAYS = 25.0
"""Time constant over which the treatment cues develop."""
RIM_CUE_HU = 45.0
RIM_CUE_NOISE_HU = 4.0
NECROSIS_CUE = 0.45
NECROSIS_CUE_NOISE = 0.04
TEXTURE_HU = (4.0, 24.0)
"""Interior texture amplitude of the slowest and of the fastest growing tumours."""
TEXTURE_NOISE_HU = 3.0
DURABLE_DAYS = 250.0
"""Treatment lasting this long before resistance gives the full necrosis cue."""
LATE_ONSET_DAYS = 150.0
"""Onset delay at which the necrosis cue would vanish (a prompt response shows it fully)."""


@dataclass(frozen=True)
class PatientDynamics:
    """A patient's latent treatment response."""

    sensitivity: float
    onset_delay_days: float
    resistance_day: float


@dataclass(frozen=True)
class LesionCourse:
    """One lesion's volume and appearance at every scan (volume 0: absent at that scan)."""

    sensitivity: float
    appear_day: int
    volumes_ml: tuple[float, ...]
    looks: tuple[Appearance, ...]
    rim_change_hu: float
    """Hidden cue: full rim-enhancement change the treatment causes (HU)."""
    necrosis_change: float
    """Hidden cue: full growth of the necrotic-core radius fraction."""
    texture_hu: float
    """Hidden cue: amplitude of the interior texture (grows with the tumour's aggressiveness)."""


def sample_patient_dynamics(rng: np.random.Generator) -> PatientDynamics:
    """Draw a patient's sensitivity, treatment onset delay and resistance time."""
    return PatientDynamics(
        sensitivity=float(rng.normal(0.0, 1.0)),
        onset_delay_days=float(rng.uniform(*ONSET_DELAY_DAYS)),
        resistance_day=float(RESISTANCE_MIN_DAYS + rng.exponential(RESISTANCE_MEAN_DAYS)),
    )


def durability(patient: PatientDynamics) -> float:
    """How promptly and how long the treatment acts, 0..1: early necrosis foreshadows it."""
    span = patient.resistance_day - patient.onset_delay_days
    lasting = float(np.clip(span / DURABLE_DAYS, 0.15, 1.0))
    prompt = float(np.clip(1.0 - patient.onset_delay_days / LATE_ONSET_DAYS, 0.0, 1.0))
    return lasting * prompt


def kill_rate(days: np.ndarray, s_effective: float, patient: PatientDynamics) -> np.ndarray:
    """Treatment kill rate (per day) at each day."""
    onset = np.clip((days - patient.onset_delay_days) / ONSET_RAMP_DAYS, 0.0, 1.0)
    resist = portable.exp(-np.maximum(0.0, days - patient.resistance_day) / RESISTANCE_DAYS)
    return KILL_MAX * portable.power(s_effective, KILL_EXPONENT) * onset * resist


def simulate_course(
    rng: np.random.Generator,
    *,
    organ: str,
    patient: PatientDynamics,
    scan_days: list[int],
    appear_day: int,
    initial_ml: float,
    sensitivity_offset: float = 0.0,
) -> LesionCourse:
    """Simulate one lesion from ``appear_day`` (0 for baseline lesions) over the scan days."""
    s_lesion = patient.sensitivity + sensitivity_offset + float(rng.normal(0.0, LESION_SD))
    s_eff = float(1.0 / (1.0 + portable.exp(-SENSITIVITY_GAIN * s_lesion)))
    capacity = max(float(rng.uniform(*CAPACITY_ML)), 3.0 * initial_ml)
    doubling = float(portable.exp(rng.uniform(*portable.log(DOUBLING_DAYS))))
    a = portable.log(2.0) / doubling / portable.log(capacity / initial_ml)
    last = scan_days[-1]
    days = np.arange(appear_day, last + 1, dtype=np.float64)
    kill = kill_rate(days, s_eff, patient)
    y = np.empty_like(days)
    y[0] = portable.log(initial_ml)
    ln_k = portable.log(capacity)
    for n in range(1, days.size):
        y[n] = y[n - 1] + a * (ln_k - y[n - 1]) - kill[n - 1]
    volume = portable.exp(y)
    gone = np.flatnonzero(volume < VANISH_ML)
    if gone.size:
        volume[gone[0]:] = 0.0
    # Cues: a sensitive lesion loses rim enhancement and grows a necrotic core.
    rim_change = -RIM_CUE_HU * (s_eff - 0.4) + float(rng.normal(0.0, RIM_CUE_NOISE_HU))
    necrosis_change = NECROSIS_CUE * s_eff * durability(patient) + float(
        rng.normal(0.0, NECROSIS_CUE_NOISE)
    )
    if appear_day > 0:
        rim_change, necrosis_change = 0.0, 0.0
    base = LESION_HU[organ] + float(rng.normal(0.0, 5.0))
    rim0 = float(rng.uniform(15.0, 45.0))
    necrosis0 = 0.0 if rng.random() < 0.5 else float(rng.uniform(0.2, 0.45))
    # Aggressive (fast-doubling) tumours look more heterogeneous from the start.
    lo, hi = portable.log(DOUBLING_DAYS)
    aggressiveness = (hi - portable.log(doubling)) / (hi - lo)
    texture0 = max(
        0.0, TEXTURE_HU[0] + (TEXTURE_HU[1] - TEXTURE_HU[0]) * aggressiveness
        + float(rng.normal(0.0, TEXTURE_NOISE_HU)),
    )
    vols: list[float] = []
    looks: list[Appearance] = []
    for day in scan_days:
        vol = float(volume[day - appear_day]) if day >= appear_day else 0.0
        cue = 1.0 - portable.exp(-max(0, day - appear_day) / CUE_DAYS)
        vols.append(vol)
        looks.append(
            Appearance(
                base_hu=base,
                rim_hu=max(0.0, rim0 + cue * rim_change),
                rim_width=0.22,
                necrosis=float(np.clip(necrosis0 + cue * necrosis_change, 0.0, 0.85)),
                texture_hu=texture0,
            )
        )
    return LesionCourse(
        sensitivity=s_lesion,
        appear_day=appear_day,
        volumes_ml=tuple(vols),
        looks=tuple(looks),
        rim_change_hu=rim_change,
        necrosis_change=necrosis_change,
        texture_hu=texture0,
    )


def new_lesion_days(rng: np.random.Generator, patient: PatientDynamics, last_day: int) -> list[int]:
    """Days (after baseline) on which new lesions arise."""
    rate = NEW_LESION_RATE * portable.exp(-NEW_LESION_GAIN * patient.sensitivity)
    days: list[int] = []
    t = 0.0
    while len(days) < MAX_NEW_LESIONS:
        t += float(rng.exponential(1.0 / rate))
        if t >= last_day:
            break
        days.append(max(1, int(t)))
    return days

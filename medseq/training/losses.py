"""Losses for the early-prediction labels: focal loss (rare responders) and the Cox loss
(time to progression with censoring). Both compute in fp32, whatever autocast does."""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor


def focal_loss(logits: Tensor, targets: Tensor, *, gamma: float = 2.0,
               pos_weight: Tensor | None = None) -> Tensor:
    """Binary focal loss with logits, mean over the batch (Lin et al. 2017).

    ``(1 - p_t) ** gamma * BCE``: confident, right predictions weigh less, so the few hard
    patients drive training. ``gamma = 0`` is ``binary_cross_entropy_with_logits``.

    Args:
        logits: ``[B]`` scores.
        targets: ``[B]`` floats in {0, 1}.
        gamma: focusing strength (>= 0).
        pos_weight: weight of the positive class's term (as in BCE).
    """
    logits, targets = logits.float(), targets.float()
    bce = F.binary_cross_entropy_with_logits(
        logits, targets, reduction="none",
        pos_weight=pos_weight.float() if pos_weight is not None else None)
    if gamma == 0:
        return bce.mean()
    # log(1 - p_t) from logsigmoid: p_t = sigmoid(+-logit), stable for large |logit|.
    signed = torch.where(targets > 0.5, -logits, logits)
    modulator = torch.exp(gamma * F.logsigmoid(signed))
    return (modulator * bce).mean()


def cox_loss(risk: Tensor, time: Tensor, event: Tensor) -> Tensor:
    """Negative Cox partial log-likelihood (Breslow ties), mean over the events.

    For each event i: ``risk_i - log sum_{j: time_j >= time_i} exp(risk_j)``. Patients
    censored count in the risk sets of earlier events only. A batch without an event gives 0,
    still connected to ``risk`` so that backward works.

    Args:
        risk: ``[B]`` log hazard ratios (higher = earlier progression).
        time: ``[B]`` days to progression or censoring.
        event: ``[B]`` True where progression was seen.
    """
    risk, time, event = risk.float().reshape(-1), time.float().reshape(-1), event.bool().reshape(-1)
    if not bool(event.any()):
        return risk.sum() * 0.0
    order = torch.argsort(time, descending=True, stable=True)
    risk_sorted, time_sorted = risk[order], time[order]
    # Running log-sum-exp from the longest time down: the risk set of each position...
    cumulative = torch.logcumsumexp(risk_sorted, dim=0)
    # ...extended to every tied time (Breslow: all with time_j >= time_i), i.e. the value at
    # the last position of each group of equal times.
    last_of_tie = torch.searchsorted(-time_sorted, -time_sorted, right=True) - 1
    log_risk_set = cumulative[last_of_tie]
    events = event[order]
    return -(risk_sorted[events] - log_risk_set[events]).mean()

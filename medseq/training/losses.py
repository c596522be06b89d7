"""Placeholder: replaced by the labels branch."""
from __future__ import annotations

import torch
from torch.nn import functional


def focal_loss(logits: torch.Tensor, targets: torch.Tensor, *, gamma: float = 2.0,
               pos_weight: torch.Tensor | None = None) -> torch.Tensor:
    bce = functional.binary_cross_entropy_with_logits(logits, targets, reduction="none",
                                                      pos_weight=pos_weight)
    p = torch.sigmoid(logits)
    pt = p * targets + (1 - p) * (1 - targets)
    return ((1 - pt) ** gamma * bce).mean()


def cox_loss(risk: torch.Tensor, time: torch.Tensor, event: torch.Tensor) -> torch.Tensor:
    order = torch.argsort(time, descending=True)
    risk, event = risk[order].float(), event[order]
    log_cum = torch.logcumsumexp(risk, dim=0)
    if not event.any():
        return risk.sum() * 0.0
    return -(risk - log_cum)[event].mean()

"""Focal and Cox losses against their direct formulas."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from medseq.training.losses import cox_loss, focal_loss


def _cox_direct(risk: torch.Tensor, time: torch.Tensor, event: torch.Tensor) -> torch.Tensor:
    """O(n^2) Breslow partial likelihood, one event at a time."""
    terms = []
    for i in range(len(risk)):
        if event[i]:
            at_risk = time >= time[i]
            terms.append(risk[i] - torch.log(torch.exp(risk[at_risk]).sum()))
    return -torch.stack(terms).mean()


@pytest.mark.parametrize("ties", [False, True])
def test_cox_loss_matches_the_direct_formula(ties: bool) -> None:
    generator = torch.Generator().manual_seed(0)
    n = 40
    risk = torch.randn(n, generator=generator, dtype=torch.float64)
    time = torch.randint(1, 8 if ties else 10_000, (n,), generator=generator).double()
    event = torch.rand(n, generator=generator) < 0.6
    expected = _cox_direct(risk, time, event)
    got = cox_loss(risk.float(), time, event)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)


def test_cox_loss_is_stable_and_has_gradients() -> None:
    risk = torch.tensor([500.0, -500.0, 3.0, 0.0], requires_grad=True)
    loss = cox_loss(risk, torch.tensor([10.0, 20.0, 20.0, 5.0]),
                    torch.tensor([True, False, True, True]))
    loss.backward()
    assert torch.isfinite(loss)
    assert risk.grad is not None
    assert torch.isfinite(risk.grad).all()
    assert risk.grad.abs().sum() > 0


def test_cox_loss_without_events_is_zero_with_a_gradient() -> None:
    risk = torch.randn(5, requires_grad=True)
    loss = cox_loss(risk, torch.arange(5.0), torch.zeros(5, dtype=torch.bool))
    loss.backward()
    assert loss.item() == 0.0
    assert risk.grad is not None
    assert (risk.grad == 0).all()


def test_focal_loss_is_bce_without_focusing_and_smaller_with_it() -> None:
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(16, generator=generator) * 3
    targets = (torch.rand(16, generator=generator) < 0.3).float()
    weight = torch.tensor(2.5)
    bce = F.binary_cross_entropy_with_logits(logits, targets, pos_weight=weight)
    assert focal_loss(logits, targets, gamma=0.0, pos_weight=weight).item() == pytest.approx(
        bce.item(), rel=1e-6)
    # Each term is scaled by (1 - p_t)^gamma < 1; the direct formula agrees.
    p = torch.sigmoid(logits)
    p_t = torch.where(targets > 0.5, p, 1 - p)
    direct = ((1 - p_t) ** 2 * F.binary_cross_entropy_with_logits(
        logits, targets, reduction="none")).mean()
    focal = focal_loss(logits, targets, gamma=2.0)
    assert focal.item() == pytest.approx(direct.item(), rel=1e-5)
    assert focal.item() < F.binary_cross_entropy_with_logits(logits, targets).item()


def test_focal_loss_is_finite_for_extreme_logits() -> None:
    logits = torch.tensor([80.0, -80.0, 80.0], requires_grad=True)
    loss = focal_loss(logits, torch.tensor([0.0, 1.0, 1.0]))
    loss.backward()
    assert torch.isfinite(loss)
    assert loss.item() > 0
    assert logits.grad is not None
    assert torch.isfinite(logits.grad).all()

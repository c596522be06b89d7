"""The response model: shapes, padding that does not leak, time handling, encoders."""

from __future__ import annotations

import pytest
import torch

from medseq.contracts.run import ModelConfig
from medseq.models.encoder import SmallCNN, build_encoder
from medseq.models.sequence import DecayRecurrent, LesionPool, ResponseModel
from tests.models.recurrent_probe import assert_fp32_outside_autocast, recurrent_calls

S = 8


def _patient(t: int, n_lesions: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(t, n_lesions, 2, S, S, S, generator=g)


def _batch(patients: list[torch.Tensor], days: list[list[float]]) -> tuple[torch.Tensor, ...]:
    b = len(patients)
    t_max = max(p.shape[0] for p in patients)
    l_max = max(p.shape[1] for p in patients)
    crops = torch.zeros(b, t_max, l_max, 2, S, S, S)
    mask = torch.zeros(b, l_max, dtype=torch.bool)
    d = torch.zeros(b, t_max)
    prev = torch.zeros(b, t_max)
    lengths = torch.zeros(b, dtype=torch.long)
    for i, p in enumerate(patients):
        crops[i, : p.shape[0], : p.shape[1]] = p
        mask[i, : p.shape[1]] = True
        d[i, : p.shape[0]] = torch.tensor(days[i])
        prev[i, 1 : p.shape[0]] = torch.diff(torch.tensor(days[i]))
        lengths[i] = p.shape[0]
    return crops, mask, lengths, d, prev


def _model(**settings: object) -> ResponseModel:
    torch.manual_seed(0)
    settings.setdefault("measurements", False)
    config = ModelConfig(widths=[4, 8], embed=8, hidden=8, dropout=0.0, **settings)  # type: ignore[arg-type]
    return ResponseModel(config).eval()


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("time", ["none", "concat", "decay"])
def test_padding_does_not_change_a_patients_prediction(cell: str, time: str) -> None:
    model = _model(cell=cell, time=time, layers=2)
    short = _patient(2, 1, seed=1)
    long = _patient(4, 3, seed=2)
    alone = model(*_batch([short], [[0, 60]]))
    together = model(*_batch([short, long], [[0, 60], [0, 50, 120, 200]]))
    assert together.logits.shape == (2, 1)
    assert together.forecast.shape == (2, 4)
    torch.testing.assert_close(alone.logits[0], together.logits[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(alone.forecast[0], together.forecast[0, :2], rtol=1e-4, atol=1e-5)


def test_intervals_matter_only_when_time_is_used() -> None:
    crops = _patient(3, 2, seed=3)
    for time, should_differ in (("none", False), ("concat", True), ("decay", True)):
        model = _model(time=time)
        a = model(*_batch([crops], [[0, 30, 60]])).logits
        b = model(*_batch([crops], [[0, 300, 600]])).logits
        assert (not torch.allclose(a, b)) is should_differ, time


def test_decay_discount_is_one_at_zero_interval_and_shrinks_with_time() -> None:
    torch.manual_seed(0)
    layer = DecayRecurrent("lstm", 4, 6, 1, 0.0)
    x = torch.randn(1, 2, 4)
    lengths = torch.tensor([2])
    # g(0) = 1: an interval of 0 days leaves the memory untouched, so two zero-interval runs match
    # a hand-stepped LSTMCell on the same weights.
    out = layer(x, torch.zeros(1, 2), lengths)
    cell = layer.cells[0]
    h = c = torch.zeros(1, 6)
    for t in range(2):
        h, c = cell(x[:, t], (h, c))
    torch.testing.assert_close(out[0, -1], h[0])
    far = layer(x, torch.tensor([[0.0, 1000.0]]), lengths)
    assert not torch.allclose(far[0, -1], out[0, -1])


def test_recist_task_has_four_logits() -> None:
    model = _model(task="recist")
    out = model(*_batch([_patient(2, 1, 4)], [[0, 90]]))
    assert out.logits.shape == (1, 4)


def test_mean_pooling_ignores_padding_lesions() -> None:
    pool = LesionPool(3, attention=False)
    lesions = torch.tensor([[[[1.0, 2, 3], [3, 4, 5], [100, 100, 100]]]])
    valid = torch.tensor([[[True, True, False]]])
    torch.testing.assert_close(pool(lesions, valid), torch.tensor([[[2.0, 3, 4]]]))


def test_attention_pooling_ignores_padding_lesions() -> None:
    torch.manual_seed(0)
    pool = LesionPool(3, attention=True)
    lesions = torch.randn(1, 1, 3, 3)
    valid = torch.tensor([[[True, True, False]]])
    changed = lesions.clone()
    changed[0, 0, 2] = 1e3
    torch.testing.assert_close(pool(lesions, valid), pool(changed, valid))


def test_small_encoder_is_about_two_hundred_thousand_parameters() -> None:
    encoder = build_encoder(ModelConfig())
    assert isinstance(encoder, SmallCNN)
    n = sum(p.numel() for p in encoder.parameters())
    assert 150_000 < n < 300_000
    assert encoder(torch.zeros(2, 2, 16, 16, 16)).shape == (2, 64)


def test_monai_resnet10_encoder_option() -> None:
    encoder = build_encoder(ModelConfig(encoder="resnet10", embed=16))
    assert encoder(torch.zeros(1, 2, 16, 16, 16)).shape == (1, 16)


def test_channels_last_gives_the_same_output() -> None:
    model = _model()
    batch = _batch([_patient(2, 2, 5)], [[0, 40]])
    plain = model(*batch).logits
    model.use_channels_last()
    torch.testing.assert_close(model(*batch).logits, plain, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("time", ["concat", "decay"])
def test_recurrent_layer_runs_in_fp32_under_bf16_autocast(cell: str, time: str) -> None:
    # oneDNN has no bf16 LSTM on AVX2-only CPUs ("could not create a primitive descriptor");
    # the probe checks the fp32 path on any CPU, with and without gradients.
    model = _model(cell=cell, time=time).train()
    batch = _batch([_patient(2, 1, 6), _patient(3, 2, 7)], [[0, 40], [0, 30, 90]])
    with recurrent_calls() as calls, torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(*batch)
        with torch.no_grad():
            model.eval()(*batch)
    assert_fp32_outside_autocast(calls)
    assert out.logits.dtype == torch.bfloat16  # the heads still run under autocast
    out.logits.float().sum().backward()
    assert all(p.grad is not None for p in model.recurrent.parameters())

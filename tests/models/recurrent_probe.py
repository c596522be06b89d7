"""Record the dtype and autocast state every recurrent module runs with.

oneDNN has no bf16 LSTM kernel on CPUs without BF16 instructions (AVX2-only x86, most ARM), so
the model must run its recurrent layer in fp32 with autocast off. A machine with AVX-512 BF16 or
AMX would not crash either way; this probe makes the tests check the design on every CPU.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence


@contextmanager
def recurrent_calls() -> Iterator[list[tuple[str, torch.dtype, bool]]]:
    """Yield a list that fills with (module class, input dtype, autocast on) per recurrent call."""
    calls: list[tuple[str, torch.dtype, bool]] = []

    def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
        if isinstance(module, nn.RNNBase | nn.RNNCellBase):
            x = args[0].data if isinstance(args[0], PackedSequence) else args[0]
            autocast = torch.is_autocast_enabled(x.device.type)
            calls.append((type(module).__name__, x.dtype, autocast))

    handle = nn.modules.module.register_module_forward_pre_hook(hook)
    try:
        yield calls
    finally:
        handle.remove()


def assert_fp32_outside_autocast(calls: list[tuple[str, torch.dtype, bool]]) -> None:
    """Every recorded recurrent call had fp32 input and autocast off (and there was one)."""
    assert calls, "no recurrent module ran"
    wrong = [c for c in calls if c[1] != torch.float32 or c[2]]
    assert not wrong, f"recurrent modules ran in reduced precision: {wrong[:3]}"

"""The response model: lesion crops over time -> response logits and a burden forecast.

Per timepoint each target lesion's crop goes through the shared encoder; the lesion embeddings
are pooled (attention or mean, padding masked); the intervals join the timepoint embedding; a
recurrent layer runs over the variable-length sequence. The response head reads the last
observed state, the forecast head every state (the next timepoint's log1p burden in mL).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from medseq.contracts.run import ModelConfig
from medseq.models.encoder import build_encoder

_CELLS: dict[str, type[nn.Module]] = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}
_STEP_CELLS: dict[str, type[nn.Module]] = {
    "lstm": nn.LSTMCell, "gru": nn.GRUCell, "rnn": nn.RNNCell,
}


def resize_crops(crops: torch.Tensor, size: int | None) -> torch.Tensor:
    """Resize [..., C, S, S, S] crops to ``size`` per edge by area averaging (masks turn into
    occupancy fractions); a no-op when ``size`` is None or already matches."""
    if size is None or tuple(crops.shape[-3:]) == (size, size, size):
        return crops
    lead = crops.shape[:-4]
    flat = crops.reshape(-1, *crops.shape[-4:]).float()
    out = nn.functional.interpolate(flat, size=(size, size, size), mode="area")
    return out.reshape(*lead, *out.shape[1:])


@dataclass(frozen=True)
class SequenceOutput:
    """What the model predicts for a batch."""

    logits: torch.Tensor
    """[B, n_outputs] response logits from the last observed state."""
    forecast: torch.Tensor
    """[B, T] predicted log1p(total lesion volume in mL) of the timepoint after each state."""


class ResponseModel(nn.Module):
    """Shared CNN encoder + lesion pooling + time-aware recurrent layer + two heads."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = build_encoder(config)
        self.pool = LesionPool(config.embed, attention=config.pooling == "attention")
        n_time = 0 if config.time == "none" else 2
        if config.time == "decay":
            self.recurrent: nn.Module = DecayRecurrent(
                config.cell, config.embed + n_time, config.hidden, config.layers, config.dropout
            )
        else:
            self.recurrent = _CELLS[config.cell](
                config.embed + n_time, config.hidden, num_layers=config.layers, batch_first=True,
                dropout=config.dropout if config.layers > 1 else 0.0,
            )
        self.dropout = nn.Dropout(config.dropout)
        self.response_head = nn.Linear(config.hidden, config.n_outputs)
        self.forecast_head = nn.Linear(config.hidden, 1)

    def forward(
        self,
        crops: torch.Tensor,
        lesion_mask: torch.Tensor,
        lengths: torch.Tensor,
        days: torch.Tensor,
        days_since_previous: torch.Tensor,
    ) -> SequenceOutput:
        """Predict from a padded batch.

        Args:
            crops: [B, T, L, C, S, S, S] lesion crops (padding anywhere is ignored).
            lesion_mask: [B, L] bool, True for a patient's real target lesions.
            lengths: [B] int64, observed timepoints per patient (>= 1).
            days: [B, T] days from baseline.
            days_since_previous: [B, T] days since the previous scan (0 at baseline).
        """
        b, t, n_lesions = crops.shape[:3]
        steps = torch.arange(t, device=crops.device)
        valid = lesion_mask[:, None, :] & (steps[None, :] < lengths[:, None])[:, :, None]
        selected = crops[valid]
        if self._channels_last:
            selected = selected.contiguous(memory_format=torch.channels_last_3d)
        embedded = self.encoder(selected)
        lesions = embedded.new_zeros(b, t, n_lesions, embedded.shape[-1])
        lesions[valid] = embedded.to(lesions.dtype)
        timepoints = self.pool(lesions, valid)
        dt = days_since_previous.to(timepoints.dtype)
        if self.config.time != "none":
            scale = self.config.time_scale_days
            time_features = torch.stack((days / scale, days_since_previous / scale), dim=-1)
            timepoints = torch.cat((timepoints, time_features.to(timepoints.dtype)), dim=-1)
        states = self._run_recurrent(timepoints, lengths, dt)
        states = self.dropout(states)
        last = states[torch.arange(b, device=states.device), lengths - 1]
        return SequenceOutput(
            logits=self.response_head(last), forecast=self.forecast_head(states).squeeze(-1)
        )

    def use_channels_last(self, enabled: bool = True) -> None:
        """Run the encoder in channels_last_3d memory format (faster 3D convolutions on CPU)."""
        self._channels_last = enabled
        if enabled:
            self.encoder.to(memory_format=torch.channels_last_3d)  # type: ignore[call-overload]

    _channels_last: bool = False

    def _run_recurrent(
        self, x: torch.Tensor, lengths: torch.Tensor, dt: torch.Tensor
    ) -> torch.Tensor:
        # The recurrent layer always runs in fp32 with autocast off: oneDNN has no bf16 LSTM
        # kernel on CPUs without BF16 instructions (AVX2-only x86, most ARM), and autocast would
        # cast its input and weights to bf16 there. It is a negligible share of the cost.
        with torch.autocast(device_type=x.device.type, enabled=False):
            x = x.float()
            dt = dt.float()
            if isinstance(self.recurrent, DecayRecurrent):
                out: torch.Tensor = self.recurrent(x, dt, lengths)
                return out
            packed = pack_padded_sequence(
                x, lengths.cpu(), batch_first=True, enforce_sorted=False
            )
            states, _ = self.recurrent(packed)
            padded, _ = pad_packed_sequence(states, batch_first=True, total_length=x.shape[1])
            return padded


class LesionPool(nn.Module):
    """Pool the lesion embeddings of each timepoint: masked mean or masked attention."""

    def __init__(self, embed: int, *, attention: bool) -> None:
        super().__init__()
        width = max(1, embed // 2)
        self.score: nn.Module | None = (
            nn.Sequential(nn.Linear(embed, width), nn.Tanh(), nn.Linear(width, 1))
            if attention else None
        )

    def forward(self, lesions: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """[B, T, L, E] with [B, T, L] mask -> [B, T, E]."""
        weights = valid.to(lesions.dtype)
        if self.score is not None:
            scores = self.score(lesions).squeeze(-1).float()
            # A large negative instead of -inf: padded timepoints have no lesion at all.
            scores = scores.masked_fill(~valid, -1e4)
            weights = torch.softmax(scores, dim=-1).to(lesions.dtype) * weights
        total = weights.sum(dim=-1, keepdim=True).clamp_min(1e-6)
        return (lesions * weights.unsqueeze(-1)).sum(dim=-2) / total


class DecayRecurrent(nn.Module):
    """Recurrent layers stepped by hand so the memory can be discounted by the interval.

    Before each step the memory (cell state for an LSTM, hidden state otherwise) is split into a
    learned short-term part ``tanh(W m + b)`` and the rest; the short-term part is multiplied by
    ``g(dt) = 1 / log(e + dt)`` with dt in days (Baytas et al., KDD 2017). At baseline dt = 0 and
    g = 1, so nothing is discounted.
    """

    def __init__(
        self, cell: str, input_size: int, hidden: int, layers: int, dropout: float
    ) -> None:
        super().__init__()
        self.is_lstm = cell == "lstm"
        self.hidden = hidden
        self.cells = nn.ModuleList(
            _STEP_CELLS[cell](input_size if i == 0 else hidden, hidden) for i in range(layers)
        )
        self.decompose = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(layers))
        self.between = nn.Dropout(dropout if layers > 1 else 0.0)

    def forward(self, x: torch.Tensor, dt: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """[B, T, D] inputs, [B, T] days since previous, [B] lengths -> [B, T, hidden]."""
        x = x.float()
        b, t = x.shape[:2]
        zeros = x.new_zeros(b, self.hidden)
        h = [zeros for _ in self.cells]
        c = [zeros for _ in self.cells]
        discount = 1.0 / torch.log(math.e + dt.float().clamp_min(0.0))
        outputs = []
        for step in range(t):
            alive = (step < lengths).unsqueeze(-1)
            g = discount[:, step].unsqueeze(-1)
            inp = x[:, step]
            for i, cell in enumerate(self.cells):
                memory = c[i] if self.is_lstm else h[i]
                short = torch.tanh(self.decompose[i](memory))
                adjusted = memory - short + short * g
                if self.is_lstm:
                    h_new, c_new = cell(inp, (h[i], adjusted))
                    c[i] = torch.where(alive, c_new, c[i])
                else:
                    h_new = cell(inp, adjusted)
                h[i] = torch.where(alive, h_new, h[i])
                inp = self.between(h_new) if i < len(self.cells) - 1 else h_new
            outputs.append(h[-1])
        return torch.stack(outputs, dim=1)

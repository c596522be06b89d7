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

from medseq.contracts.run import LESION_MEASUREMENTS, SCAN_MEASUREMENTS, ModelConfig
from medseq.models.encoder import build_encoder, embedding_size

_LESION_SCALE = 5.0
"""Sums over lesions are divided by this (a patient has 1-5 target lesions)."""

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
    """Shared CNN encoder + lesion measurements + lesion pooling + time-aware recurrent layer
    + two heads."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = build_encoder(config)
        n_lesion = len(LESION_MEASUREMENTS) if config.measurements else 0
        n_scan = len(SCAN_MEASUREMENTS) if config.measurements else 0
        lesion_width = embedding_size(config) + n_lesion
        self.pool = LesionPool(lesion_width, attention=config.pooling == "attention",
                               stats=config.pool_stats)
        n_time = 0 if config.time == "none" else 2
        step_width = self.pool.out_width + n_scan + n_time
        if config.time == "decay":
            self.recurrent: nn.Module = DecayRecurrent(
                config.cell, step_width, config.hidden, config.layers, config.dropout
            )
        else:
            self.recurrent = _CELLS[config.cell](
                step_width, config.hidden, num_layers=config.layers, batch_first=True,
                dropout=config.dropout if config.layers > 1 else 0.0,
                bidirectional=config.bidirectional,
            )
        state_width = config.hidden * (2 if config.bidirectional else 1)
        # The measurements of the last observed scan reach the response head directly too (a
        # linear path beside the recurrent state), so the change to baseline they hold need
        # not survive the recurrent layer to be used.
        # Pooled like the lesion vectors (mean, sum, max), without learned weights.
        self.skip_pool = LesionPool(n_lesion, attention=False, stats=True)
        self.skip_width = self.skip_pool.out_width + n_scan if config.measurements else 0
        self.dropout = nn.Dropout(config.dropout)
        self.response_head = nn.Linear(state_width + self.skip_width, config.n_outputs)
        self.forecast_head = nn.Linear(state_width, 1)

    def forward(
        self,
        crops: torch.Tensor,
        lesion_mask: torch.Tensor,
        lengths: torch.Tensor,
        days: torch.Tensor,
        days_since_previous: torch.Tensor,
        lesion_features: torch.Tensor | None = None,
        scan_features: torch.Tensor | None = None,
    ) -> SequenceOutput:
        """Predict from a padded batch.

        Args:
            crops: [B, T, L, C, S, S, S] lesion crops (padding anywhere is ignored).
            lesion_mask: [B, L] bool, True for a patient's real target lesions.
            lengths: [B] int64, observed timepoints per patient (>= 1).
            days: [B, T] days from baseline.
            days_since_previous: [B, T] days since the previous scan (0 at baseline).
            lesion_features: [B, T, L, F] measurements (``config.measurements``).
            scan_features: [B, T, G] per-scan measurements (``config.measurements``).
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
        parts = [lesions]
        if self.config.measurements:
            if lesion_features is None or scan_features is None:
                raise ValueError("this model reads lesion and scan measurements")
            lesion_features = lesion_features.to(lesions.dtype) * valid.unsqueeze(-1)
            parts.append(lesion_features)
        timepoints = self.pool(torch.cat(parts, dim=-1), valid)
        steps_in = [timepoints]
        if self.config.measurements:
            assert scan_features is not None
            steps_in.append(scan_features.to(timepoints.dtype))
        dt = days_since_previous.to(timepoints.dtype)
        if self.config.time != "none":
            scale = self.config.time_scale_days
            time_features = torch.stack((days / scale, days_since_previous / scale), dim=-1)
            steps_in.append(time_features.to(timepoints.dtype))
        states, last = self._run_recurrent(torch.cat(steps_in, dim=-1), lengths, dt)
        states = self.dropout(states)
        last = self.dropout(last)
        rows = torch.arange(b, device=states.device)
        if self.skip_width:
            assert lesion_features is not None
            assert scan_features is not None
            final = rows, lengths - 1
            pooled = self.skip_pool(lesion_features[final].float().unsqueeze(1),
                                    valid[final].unsqueeze(1)).squeeze(1)
            skip = torch.cat((pooled, scan_features[final].float()), dim=-1)
            last = torch.cat((last, skip.to(last.dtype)), dim=-1)
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
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(every state [B, T, H'], the state the response head reads [B, H'])."""
        # The recurrent layer always runs in fp32 with autocast off: oneDNN has no bf16 LSTM
        # kernel on CPUs without BF16 instructions (AVX2-only x86, most ARM), and autocast would
        # cast its input and weights to bf16 there. It is a negligible share of the cost.
        with torch.autocast(device_type=x.device.type, enabled=False):
            x = x.float()
            dt = dt.float()
            rows = torch.arange(x.shape[0], device=x.device)
            if isinstance(self.recurrent, DecayRecurrent):
                out: torch.Tensor = self.recurrent(x, dt, lengths)
                return out, out[rows, lengths - 1]
            packed = pack_padded_sequence(
                x, lengths.cpu(), batch_first=True, enforce_sorted=False
            )
            states, _ = self.recurrent(packed)
            padded, _ = pad_packed_sequence(states, batch_first=True, total_length=x.shape[1])
            if not self.config.bidirectional:
                return padded, padded[rows, lengths - 1]
            # Both directions' summaries: forward at the last scan, backward at the first.
            hidden = self.config.hidden
            last = torch.cat((padded[rows, lengths - 1, :hidden], padded[:, 0, hidden:]), dim=-1)
            return padded, last


class LesionPool(nn.Module):
    """Pool the lesion vectors of each timepoint: masked mean or masked attention, and with
    ``stats`` also their sum (/ 5) and maximum, so lesion count and total burden survive."""

    def __init__(self, embed: int, *, attention: bool, stats: bool = False) -> None:
        super().__init__()
        width = max(1, embed // 2)
        self.score: nn.Module | None = (
            nn.Sequential(nn.Linear(embed, width), nn.Tanh(), nn.Linear(width, 1))
            if attention else None
        )
        self.stats = stats
        self.out_width = embed * (3 if stats else 1)

    def forward(self, lesions: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """[B, T, L, E] with [B, T, L] mask -> [B, T, E] (or [B, T, 3E] with ``stats``)."""
        weights = valid.to(lesions.dtype)
        if self.score is not None:
            scores = self.score(lesions).squeeze(-1).float()
            # A large negative instead of -inf: padded timepoints have no lesion at all.
            scores = scores.masked_fill(~valid, -1e4)
            weights = torch.softmax(scores, dim=-1).to(lesions.dtype) * weights
        total = weights.sum(dim=-1, keepdim=True).clamp_min(1e-6)
        pooled = (lesions * weights.unsqueeze(-1)).sum(dim=-2) / total
        if not self.stats:
            return pooled
        masked = lesions * valid.unsqueeze(-1).to(lesions.dtype)
        peak = lesions.masked_fill(~valid.unsqueeze(-1), -1e4).amax(dim=-2)
        peak = peak.clamp_min(-1e3) * valid.any(dim=-1, keepdim=True).to(lesions.dtype)
        return torch.cat((pooled, masked.sum(dim=-2) / _LESION_SCALE, peak), dim=-1)


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

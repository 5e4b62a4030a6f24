"""The caption side of a captioned Orderless NADE: a quasi-recurrent encoder and two merges.

Encoder (Bradbury et al. 2016's QRNN, "fo-pooling")::

    ids (B, T), PAD = 0       -> prepend the caption-start token  -> (B, T+1)
      -> embedding (B, T+1, E), zero at padding
      -> per direction: causal conv over time, width k, to 3 x hidden  -> z = tanh, f = o = sigmoid
         c_t = f_t * c_{t-1} + (1 - f_t) * z_t,   h_t = o_t * c_t        (f = 1 at padding)
      -> (B, T+1, S), S = hidden (x 2 when bidirectional, the backward pass on the reversed time)

The start token gives every caption at least one state, so "no caption" (``context=None``, or a
row of padding only) is simply the caption of no words, which the model learns from the captions
dropped during training. Padding never matters: its embedding is zero, its forget gate is 1 (the
state passes through it unchanged; a backward pass starts from zeros at the last word) and the
merges mask it out.

Merges, applied to the convnet's features ``h (B, W, H, Wd)`` every few blocks:

- :class:`AttentionMerge`: a learned bilinear score ``h_p^T M s_t`` between each feature vector
  and each caption state, a softmax over caption positions with padding masked, and the weighted
  sum of (projected) states added to the features;
- :class:`ConcatMerge`: the mean of the caption states, tiled over the image, concatenated to the
  features and projected back (a 1x1 convolution), added to the features.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

MERGES = ("attention", "concat")


def fo_pool(z: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """``c_t = f_t c_{t-1} + (1 - f_t) z_t`` from ``c_0 = 0``, for all t at once.

    Unrolled, ``c_t = sum_{s <= t} (1 - f_s) z_s prod_{s < r <= t} f_r``; the products are
    ``exp(L_t - L_s)`` with ``L = cumsum(log f)``, never above 1, so this is stable for any gates.
    It costs ``O(T^2)`` per channel, which for captions (T of a few dozen) beats a Python loop.

    Args:
        z: ``(B, T, H)`` candidate values.
        f: ``(B, T, H)`` forget gates in ``[0, 1]``.

    Returns:
        ``(B, T, H)`` cell states.
    """
    log_f = torch.log(f.clamp(min=1e-30))
    L = log_f.cumsum(1)  # (B, T, H)
    T = z.shape[1]
    decay = L.unsqueeze(2) - L.unsqueeze(1)  # (B, t, s, H): L_t - L_s
    causal = torch.ones(T, T, dtype=torch.bool, device=z.device).tril()
    weights = torch.where(causal[None, :, :, None], decay, float("-inf")).exp()
    return torch.einsum("btsh,bsh->bth", weights, (1 - f) * z)


class QRNNDirection(nn.Module):
    """One direction of one QRNN layer: ``(B, T, E)`` inputs -> ``(B, T, H)`` states."""

    def __init__(self, input_size: int, hidden_size: int, kernel_size: int):
        super().__init__()
        self.kernel_size = kernel_size
        self.conv = nn.Conv1d(input_size, 3 * hidden_size, kernel_size)

    def forward(self, inputs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``inputs`` ``(B, T, E)`` (zero at padding), ``mask`` ``(B, T)`` True = a token."""
        padded = F.pad(inputs.transpose(1, 2), (self.kernel_size - 1, 0))  # causal: sees only the past
        z, f, o = self.conv(padded).transpose(1, 2).chunk(3, dim=-1)
        token = mask.unsqueeze(-1)
        f = torch.where(token, torch.sigmoid(f), torch.ones_like(f))
        c = fo_pool(torch.tanh(z), f)
        return torch.where(token, torch.sigmoid(o) * c, torch.zeros_like(c))


def _reverse_tokens(t: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse the first ``lengths[b]`` positions of every row of ``(B, T, ...)``, padding stays last."""
    B, T = t.shape[:2]
    positions = torch.arange(T, device=t.device).expand(B, T)
    source = torch.where(positions < lengths[:, None], lengths[:, None] - 1 - positions, positions)
    return t.gather(1, source.view(B, T, *([1] * (t.dim() - 2))).expand_as(t))


class CaptionEncoder(nn.Module):
    """Token ids ``(B, T)`` -> caption states ``(B, T + 1, S)`` and their mask ``(B, T + 1)``."""

    def __init__(
        self,
        vocab_size: int,
        embedding: int,
        hidden: int,
        kernel_size: int = 2,
        bidirectional: bool = True,
        layers: int = 1,
    ):
        super().__init__()
        self.start = vocab_size  # one row past the vocabulary: the caption-start token
        self.embedding = nn.Embedding(vocab_size + 1, embedding, padding_idx=0)
        self.directions = 2 if bidirectional else 1
        self.layers = nn.ModuleList()
        size = embedding
        for _ in range(layers):
            self.layers.append(nn.ModuleList(QRNNDirection(size, hidden, kernel_size) for _ in range(self.directions)))
            size = hidden * self.directions
        self.state_size = size

    def forward(self, ids: torch.Tensor | None, batch: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode ``ids`` (``(B, T)`` long, PAD = 0), or no caption for ``batch`` examples if None."""
        device = self.embedding.weight.device
        if ids is None:
            ids = torch.zeros(batch, 0, dtype=torch.long, device=device)
        ids = torch.as_tensor(ids, device=device).long()
        start = torch.full((ids.shape[0], 1), self.start, dtype=torch.long, device=device)
        ids = torch.cat([start, ids], 1)
        mask = ids != 0
        lengths = mask.sum(1)
        h = self.embedding(ids) * mask.unsqueeze(-1)
        for layer in self.layers:
            outputs = [layer[0](h, mask)]
            if self.directions == 2:
                backward = layer[1](_reverse_tokens(h, lengths), mask)
                outputs.append(_reverse_tokens(backward, lengths))
            h = torch.cat(outputs, -1)
        return h, mask


class AttentionMerge(nn.Module):
    """Adds to every feature vector a softmax-weighted sum of the caption states."""

    def __init__(self, width: int, state_size: int):
        super().__init__()
        self.metric = nn.Parameter(nn.init.normal_(torch.empty(width, state_size), std=1.0 / math.sqrt(state_size)))
        self.value = nn.Linear(state_size, width)
        self.scale = 1 / math.sqrt(width)

    def forward(self, h: torch.Tensor, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``h`` ``(B, W, H, Wd)``, states ``(B, T, S)``, mask ``(B, T)`` -> ``(B, W, H, Wd)``."""
        keys = states @ self.metric.T  # (B, T, W)
        scores = torch.einsum("bchw,btc->bhwt", h, keys) * self.scale
        scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
        weights = torch.softmax(scores, -1)  # the start token is never masked, so no row is empty
        return h + torch.einsum("bhwt,btc->bchw", weights, self.value(states))


class ConcatMerge(nn.Module):
    """Concatenates the tiled mean caption state to the features and projects back (residually)."""

    def __init__(self, width: int, state_size: int):
        super().__init__()
        self.project = nn.Conv2d(width + state_size, width, 1)

    def forward(self, h: torch.Tensor, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """As :meth:`AttentionMerge.forward`."""
        weights = mask.unsqueeze(-1).to(states.dtype)
        pooled = (states * weights).sum(1) / weights.sum(1)  # (B, S)
        tiled = pooled[:, :, None, None].expand(-1, -1, *h.shape[2:])
        return h + self.project(torch.cat([F.relu(h), tiled], 1))


MERGE_CLASSES = {"attention": AttentionMerge, "concat": ConcatMerge}

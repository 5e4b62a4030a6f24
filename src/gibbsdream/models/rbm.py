"""Restricted Boltzmann machine with Bernoulli or categorical ("softmax") visible units.

Visible states are category indices ``v: (B, V)`` with values in ``[0, K)``. With ``K = 2`` the
visible units are Bernoulli (``v`` is 0/1); with ``K > 2`` each visible unit is one softmax group
of K one-hot bits, so exactly one category is on at every position. Hidden units are Bernoulli.

Energy of a joint state, with ``onehot(v)`` the ``(V, K)`` one-hot code of ``v``::

    E(v, h) = -sum_{i,k} b[i,k] onehot(v)[i,k] - sum_j c[j] h[j] - sum_{j,i,k} h[j] W[j,i,k] onehot(v)[i,k]

(for Bernoulli visible units drop the ``k`` index and use ``v`` itself). Summing out ``h`` gives
the free energy ``F(v) = -b . v - sum_j softplus(c[j] + W[j] . v)`` with ``p(v) ∝ exp(-F(v))``.

Temperature ``T`` tempers the joint, ``p_T(v, h) ∝ exp(-E(v, h) / T)``; its block conditionals are
``p_T(h_j = 1 | v) = sigmoid((c_j + W_j . v) / T)`` and ``p_T(v_i | h) = softmax((b_i + W_i^T h) / T)``,
so Gibbs sampling at temperature T samples ``p_T(v) ∝ exp(-F_T(v))`` with
``F_T(v) = -(b . v) / T - sum_j softplus((c_j + W_j . v) / T)`` (see :meth:`RBM.free_energy`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..sampling.categorical import sample_bernoulli, sample_categorical
from .shapes import row_offsets


@dataclass
class RBMConfig:
    """Shape of an :class:`RBM` (saved with its checkpoint as ``config.json``'s ``"model"``)."""

    num_visible: int  # positions V (a string's length)
    num_hidden: int = 128  # hidden units H
    num_categories: int = 2  # values K per position: 2 is Bernoulli, more is one softmax group each

    def check(self) -> RBMConfig:
        """Raise a ConfigError naming the first impossible field; returns self."""
        for name, least in (("num_visible", 1), ("num_hidden", 1), ("num_categories", 2)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise ConfigError(f"{name} must be a whole number >= {least}, got {value!r}", name)
        return self

    def to_dict(self) -> dict:
        """The JSON a checkpoint saves (and :class:`RBM` reads back with ``RBM(**d)``)."""
        return asdict(self)

    def __call__(self) -> dict:
        """``model.config()``, the form of the versions where ``config`` was a method: the saved dict."""
        return self.to_dict()


class RBM(nn.Module):
    """Bernoulli-hidden RBM over ``num_visible`` units with ``num_categories`` values each.

    Built from an :class:`RBMConfig` (``RBM(config)``) or from its fields, as ``RBM(num_visible,
    num_hidden, num_categories)`` or by keyword; :attr:`config` holds the checked config.

    Parameters (``K = num_categories``):

    * ``K == 2`` (Bernoulli visible): ``weight (H, V)``, ``visible_bias (V,)``, ``hidden_bias (H,)``.
    * ``K > 2`` (categorical visible): ``weight (H, V, K)``, ``visible_bias (V, K)``, ``hidden_bias (H,)``.
    """

    family = "rbm"

    def __init__(self, *args, **kwargs):
        super().__init__()
        single = len(args) == 1 and not kwargs and isinstance(args[0], RBMConfig)
        self.config = (args[0] if single else RBMConfig(*args, **kwargs)).check()
        num_visible, num_hidden, num_categories = (
            self.config.num_visible,
            self.config.num_hidden,
            self.config.num_categories,
        )
        self.num_visible = num_visible
        self.num_hidden = num_hidden
        self.num_categories = num_categories
        visible_shape = (num_visible,) if num_categories == 2 else (num_visible, num_categories)
        # Stored visible-major: the H weights of one (position, category) are one contiguous row,
        # so a state's hidden pre-activations are a gather-and-sum of V rows (embedding_bag)
        # instead of a dense one-hot matmul K times larger. The parameter keeps shape (H, V, K).
        self.weight = nn.Parameter(torch.empty(*visible_shape, num_hidden).movedim(-1, 0))
        self.visible_bias = nn.Parameter(torch.zeros(visible_shape))
        self.hidden_bias = nn.Parameter(torch.zeros(num_hidden))
        # Row of (position i, category 0) in the flattened (V*K, H) weights.
        self.register_buffer("position_offsets", row_offsets(num_visible, num_categories), persistent=False)
        self.reset_parameters()

    @property
    def categorical(self) -> bool:
        return self.num_categories > 2

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of one visible state (without the batch dimension)."""
        return (self.num_visible,)

    def reset_parameters(self, generator: torch.Generator | None = None, std: float = 0.01) -> None:
        """Small random weights (Hinton's practical guide) and zero biases."""
        if self.weight.is_meta:  # built as shapes only (models.shapes): no values to draw
            return
        with torch.no_grad():
            noise = torch.randn(self.weight.shape, generator=generator, device=self.weight.device)
            self.weight.copy_(noise * std)
            self.visible_bias.zero_()
            self.hidden_bias.zero_()

    def init_visible_bias_from_data(self, v: torch.Tensor, smoothing: float = 1.0) -> None:
        """Set visible biases to the log-frequencies of the data (Hinton's guide, section 8.1).

        ``v: (N, V)`` category indices. ``smoothing`` is an additive (Laplace) count per category.
        """
        counts = self.one_hot(v).sum(0).view(self.visible_bias.shape[0], -1)  # (V, K) or (V, 1)
        n = v.shape[0]
        with torch.no_grad():
            if self.categorical:
                freq = (counts + smoothing) / (n + smoothing * self.num_categories)
                self.visible_bias.copy_(freq.log())
            else:
                p = (counts.squeeze(-1) + smoothing) / (n + 2 * smoothing)
                self.visible_bias.copy_(torch.logit(p))

    # ---- encodings -----------------------------------------------------------------------

    def one_hot(self, v: torch.Tensor) -> torch.Tensor:
        """``(B, V)`` indices -> ``(B, V*K)`` one-hot floats (``(B, V)`` 0/1 floats if Bernoulli)."""
        dtype = self.weight.dtype
        if not self.categorical:
            return v.to(dtype)
        out = torch.zeros(v.shape[0], self.num_visible * self.num_categories, dtype=dtype, device=v.device)
        return out.scatter_(1, v + self.position_offsets, 1.0)

    def flat_weight(self) -> torch.Tensor:
        """``(H, V*K)`` (or ``(H, V)``) view of the weights, matching :meth:`one_hot`."""
        return self.weight.reshape(self.num_hidden, -1)

    def flat_weight_t(self) -> torch.Tensor:
        """``(V*K, H)`` (or ``(V, H)``): one row per visible (position, category); contiguous."""
        return self.flat_weight().t()

    # ---- energies ------------------------------------------------------------------------

    def hidden_logits(self, v: torch.Tensor) -> torch.Tensor:
        """``(B, V)`` visible states -> ``(B, H)`` hidden pre-activations ``c + W v``."""
        if not self.categorical:
            return torch.addmm(self.hidden_bias, v.to(self.weight.dtype), self.flat_weight_t())
        return F.embedding_bag(v + self.position_offsets, self.flat_weight_t(), mode="sum").add_(self.hidden_bias)

    def visible_logits(self, h: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        """``(B, H)`` hidden states -> ``(B, V, K)`` visible logits (``(B, V)`` log-odds if Bernoulli).

        ``scale`` multiplies the logits inside the product (``1 / T`` for temperature ``T``),
        which saves a pass over the largest tensor of a sweep.
        """
        flat = torch.addmm(self.visible_bias.view(-1), h, self.flat_weight(), beta=scale, alpha=scale)
        return flat.view(h.shape[0], *self.visible_bias.shape)

    def visible_term(self, v: torch.Tensor) -> torch.Tensor:
        """``(B, V)`` -> ``(B,)``: ``b . v``, the visible biases' part of ``-E``."""
        if self.categorical:
            return self.visible_bias.unsqueeze(0).expand(v.shape[0], -1, -1).gather(2, v.unsqueeze(-1)).sum((1, 2))
        return v.to(self.visible_bias.dtype) @ self.visible_bias

    def free_energy(self, v: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
        """``(B, V)`` -> ``(B,)``: ``F_T(v)``, so that ``p_T(v) ∝ exp(-F_T(v))`` (module docstring)."""
        return self.free_energy_from_logits(v, self.hidden_logits(v), temperature)

    def free_energy_from_logits(
        self, v: torch.Tensor, hidden_logits: torch.Tensor, temperature: float = 1.0
    ) -> torch.Tensor:
        """:meth:`free_energy` given ``hidden_logits(v)`` already computed (saves a matmul)."""
        return -(self.visible_term(v) / temperature + F.softplus(hidden_logits / temperature).sum(-1))

    def energy(self, v: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """``(B, V)``, ``(B, H)`` -> ``(B,)``: the joint energy ``E(v, h)``."""
        return -(self.visible_term(v) + (h * self.hidden_logits(v)).sum(-1))

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        """Free energy, ``(B, V) -> (B,)``."""
        return self.free_energy(v)

    def contrastive_gradients(
        self, v_data: torch.Tensor, h_data: torch.Tensor, v_model: torch.Tensor, h_model: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Gradients of ``mean F(v_data) - mean F(v_model)`` for (weight, visible_bias, hidden_bias).

        Descending them is (persistent) contrastive divergence. ``v_*: (B, V)`` states,
        ``h_*: (B, H)`` hidden probabilities given those states. The data and model sides may
        have different batch sizes. The weight gradient has the weight's own memory layout.
        """
        n_data, n_model = v_data.shape[0], v_model.shape[0]
        signed_hidden = torch.cat([h_model / n_model, h_data / -n_data])
        if self.categorical:
            # sum_b h_b ⊗ onehot(v_b) without building the one-hot: add h_b into the row of each
            # (position, category) that v_b uses.
            rows = torch.cat([v_model, v_data]) + self.position_offsets
            grad_flat_t = torch.zeros_like(self.flat_weight_t())
            grad_flat_t.index_add_(0, rows.view(-1), signed_hidden.repeat_interleave(self.num_visible, 0))
            dtype = self.visible_bias.dtype  # not bincount's default float: a float64 model keeps float64
            counts = torch.bincount(rows[:n_model].view(-1), minlength=grad_flat_t.shape[0]).to(dtype) / n_model
            counts -= torch.bincount(rows[n_model:].view(-1), minlength=grad_flat_t.shape[0]).to(dtype) / n_data
            grad_visible = counts.view_as(self.visible_bias)
        else:
            visible = torch.cat([v_model, v_data]).to(self.weight.dtype)
            grad_flat_t = visible.t() @ signed_hidden
            grad_visible = visible[:n_model].mean(0) - visible[n_model:].mean(0)
        grad_hidden = signed_hidden.sum(0)
        return grad_flat_t.t().view(self.weight.shape), grad_visible, grad_hidden

    # ---- block Gibbs conditionals ----------------------------------------------------------

    def sample_hidden(
        self, hidden_logits: torch.Tensor, temperature: float = 1.0, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Draw ``h ~ p_T(h | v)`` from ``hidden_logits(v)``: ``(B, H)`` floats in {0, 1}."""
        return sample_bernoulli(hidden_logits, temperature, generator)

    def sample_visible(
        self, h: torch.Tensor, temperature: float = 1.0, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Draw ``v ~ p_T(v | h)``: ``(B, H)`` -> ``(B, V)`` long category indices."""
        if temperature == 0:  # the argmax of the untempered logits
            logits = self.visible_logits(h)
        else:
            logits, temperature = self.visible_logits(h, 1.0 / temperature), 1.0
        if self.categorical:
            return sample_categorical(logits, temperature, generator)
        return sample_bernoulli(logits, temperature, generator).long()

    def gibbs_step(
        self, v: torch.Tensor, temperature: float = 1.0, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """One full sweep ``v -> h -> v'`` at temperature ``T``: ``(B, V) -> (B, V)``."""
        h = self.sample_hidden(self.hidden_logits(v), temperature, generator)
        return self.sample_visible(h, temperature, generator)

"""Simple density models of images, as yardsticks for Orderless NADE's likelihood.

Both treat an image as ``D`` independent-looking categorical variables: the independent model
literally, the mixture only given its component. They are fitted in closed form (counts) and by
EM, vectorised over images, components and variables, and index their tables (never one-hot
copies), so 64x64 RGB images with 256 levels fit in memory.
"""

from __future__ import annotations

import math

import torch

# Images per chunk of the sums below: a chunk's gathered values are (components, chunk * D), so a
# 64x64x3 image set with 32 components stays near 100 MB however many images there are.
_CHUNK_VALUES = 2**22


def _flat_index(x: torch.Tensor, num_categories: int) -> torch.Tensor:
    """``(N, *shape)`` levels -> ``(N, D)`` positions ``d * K + x_d`` in a flattened ``(D, K)`` table.

    Tables are indexed rather than multiplied by one-hot rows: a one-hot copy of 3,000 images of
    64x64x3 with 256 levels would take 75 GB."""
    flat = x.reshape(x.shape[0], -1).long()
    if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) >= num_categories):
        raise ValueError(f"levels must lie in 0..{num_categories - 1}")
    return flat + torch.arange(flat.shape[1], device=x.device) * num_categories


def _chunks(n: int, per_image: int):
    step = max(1, _CHUNK_VALUES // max(per_image, 1))
    return (slice(start, start + step) for start in range(0, n, step))


class IndependentCategorical:
    """``p(x) = prod_d theta_d[x_d]``, one categorical per variable, with add-``alpha`` smoothing."""

    def __init__(self, num_categories: int, alpha: float = 1.0):
        self.num_categories, self.alpha = num_categories, alpha

    def fit(self, x: torch.Tensor) -> IndependentCategorical:
        """``x``: ``(N, *shape)`` long levels."""
        index = _flat_index(x, self.num_categories)
        D, K = index.shape[1], self.num_categories
        counts = torch.bincount(index.reshape(-1), minlength=D * K).double().view(D, K) + self.alpha
        self.log_theta = (counts / counts.sum(-1, keepdim=True)).log()  # (D, K)
        return self

    def log_likelihood(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, *shape)`` -> ``(N,)`` nats."""
        return self.log_theta.reshape(-1)[_flat_index(x, self.num_categories)].sum(1)


class MixtureOfCategoricals:
    """``p(x) = sum_m pi_m prod_d theta_{m,d}[x_d]``, fitted by EM from a random start.

    Each M-step adds ``alpha`` pseudo-counts (a MAP estimate under a symmetric Dirichlet), which
    keeps components from assigning zero probability to a level they never saw. Memory: two
    ``(components, D, K)`` float64 tables (800 MB for 32 components at 64x64x3 with 256 levels).
    """

    def __init__(
        self, num_categories: int, components: int = 100, iterations: int = 100, alpha: float = 1.0, seed: int = 0
    ):
        self.num_categories, self.components = num_categories, components
        self.iterations, self.alpha, self.seed = iterations, alpha, seed

    def _component_log_likelihoods(self, index: torch.Tensor) -> torch.Tensor:
        """``(N, D)`` table positions -> ``(N, M)`` ``log pi_m + log p(x | m)``."""
        table = self.log_theta.reshape(self.components, -1)
        out = torch.empty(index.shape[0], self.components, dtype=torch.float64, device=index.device)
        for rows in _chunks(index.shape[0], index.shape[1] * self.components):
            picked = table.index_select(1, index[rows].reshape(-1))  # (M, n * D)
            out[rows] = picked.view(self.components, -1, index.shape[1]).sum(-1).T  # (n, M)
        return out + self.log_pi

    def fit(self, x: torch.Tensor) -> MixtureOfCategoricals:
        """``x``: ``(N, *shape)`` long levels."""
        index = _flat_index(x, self.num_categories)
        (N, D), K, M = index.shape, self.num_categories, self.components
        generator = torch.Generator().manual_seed(self.seed)
        # Start from random soft assignments, so the first M-step gives distinct components.
        responsibilities = torch.rand(N, M, generator=generator, dtype=torch.float64).to(x.device)
        responsibilities /= responsibilities.sum(1, keepdim=True)
        counts = torch.empty(M, D * K, dtype=torch.float64, device=x.device)
        for _ in range(self.iterations):
            counts.fill_(self.alpha)
            for rows in _chunks(N, D * M):  # counts[m, d*K + x_nd] += r_nm over the chunk's images
                weights = responsibilities[rows].T.repeat_interleave(D, 1)  # (M, n * D), contiguous
                counts.index_add_(1, index[rows].reshape(-1), weights)
            theta = counts.view(M, D, K)
            self.log_theta = (theta / theta.sum(-1, keepdim=True)).log()  # (M, D, K)
            self.log_pi = (responsibilities.sum(0) / N).clamp(min=1e-12).log()
            responsibilities = torch.softmax(self._component_log_likelihoods(index), dim=1)
        return self

    def log_likelihood(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, *shape)`` -> ``(N,)`` nats."""
        return torch.logsumexp(self._component_log_likelihoods(_flat_index(x, self.num_categories)), dim=1)


def bits_per_dimension(nats_per_example: float, dimensions: int) -> float:
    return nats_per_example / (dimensions * math.log(2))

"""Simple density models of images, as yardsticks for Orderless NADE's likelihood.

Both treat an image as ``D`` independent-looking categorical variables: the independent model
literally, the mixture only given its component. They are fitted in closed form (counts) and by
EM, vectorised over images, components and variables.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F


def _one_hot(x: torch.Tensor, num_categories: int) -> torch.Tensor:
    """``(N, *shape)`` levels -> ``(N, D * K)`` float one-hot rows."""
    return F.one_hot(x.reshape(x.shape[0], -1), num_categories).reshape(x.shape[0], -1).double()


class IndependentCategorical:
    """``p(x) = prod_d theta_d[x_d]``, one categorical per variable, with add-``alpha`` smoothing."""

    def __init__(self, num_categories: int, alpha: float = 1.0):
        self.num_categories, self.alpha = num_categories, alpha

    def fit(self, x: torch.Tensor) -> IndependentCategorical:
        """``x``: ``(N, *shape)`` long levels."""
        counts = _one_hot(x, self.num_categories).sum(0).view(-1, self.num_categories) + self.alpha
        self.log_theta = (counts / counts.sum(-1, keepdim=True)).log()  # (D, K)
        return self

    def log_likelihood(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, *shape)`` -> ``(N,)`` nats."""
        return _one_hot(x, self.num_categories) @ self.log_theta.reshape(-1)


class MixtureOfCategoricals:
    """``p(x) = sum_m pi_m prod_d theta_{m,d}[x_d]``, fitted by EM from a random start.

    Each M-step adds ``alpha`` pseudo-counts (a MAP estimate under a symmetric Dirichlet), which
    keeps components from assigning zero probability to a level they never saw.
    """

    def __init__(
        self, num_categories: int, components: int = 100, iterations: int = 100, alpha: float = 1.0, seed: int = 0
    ):
        self.num_categories, self.components = num_categories, components
        self.iterations, self.alpha, self.seed = iterations, alpha, seed

    def _component_log_likelihoods(self, one_hot: torch.Tensor) -> torch.Tensor:
        return one_hot @ self.log_theta.reshape(self.components, -1).T + self.log_pi  # (N, M)

    def fit(self, x: torch.Tensor) -> MixtureOfCategoricals:
        """``x``: ``(N, *shape)`` long levels."""
        one_hot = _one_hot(x, self.num_categories)
        N, K, M = x.shape[0], self.num_categories, self.components
        generator = torch.Generator().manual_seed(self.seed)
        # Start from random soft assignments, so the first M-step gives distinct components.
        responsibilities = torch.rand(N, M, generator=generator, dtype=torch.float64).to(x.device)
        responsibilities /= responsibilities.sum(1, keepdim=True)
        for _ in range(self.iterations):
            counts = (responsibilities.T @ one_hot).view(M, -1, K) + self.alpha
            self.log_theta = (counts / counts.sum(-1, keepdim=True)).log()  # (M, D, K)
            self.log_pi = (responsibilities.sum(0) / N).clamp(min=1e-12).log()
            joint = self._component_log_likelihoods(one_hot)
            responsibilities = torch.softmax(joint, dim=1)
        return self

    def log_likelihood(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, *shape)`` -> ``(N,)`` nats."""
        return torch.logsumexp(self._component_log_likelihoods(_one_hot(x, self.num_categories)), dim=1)


def bits_per_dimension(nats_per_example: float, dimensions: int) -> float:
    return nats_per_example / (dimensions * math.log(2))

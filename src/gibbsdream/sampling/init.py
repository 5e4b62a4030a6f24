"""Where RBM chains start ("visible initialisations", after the RBM seed's VisInit).

Each returns ``(N, V)`` category indices. Category 0 is the padding symbol for string codecs
(and 0 for Bernoulli units), so ``zeros`` and ``padding`` start at the same state here.
"""

from __future__ import annotations

import torch

from ..errors import ConfigError, UsageError

INITS = {
    "zeros": "every position at category 0 (the padding symbol for strings)",
    "biases": "each position drawn from the softmax of its visible biases",
    "uniform": "each position uniform over all categories, padding included",
    "uniform_chars": "each position uniform over the non-padding characters",
    "spaces": "every position a space character",
    "padding": "every position the padding symbol",
    "train": "random training strings",
    "chunks": "a random length of uniformly random characters, padded",
    "silhouettes": "training strings with every character replaced by a random one (the shape kept)",
}
NEEDS_DATA = ("train", "silhouettes")


def _random_chars(shape, num_categories, generator, device) -> torch.Tensor:
    return torch.randint(1, num_categories, shape, generator=generator, device=device)


def initial_states(
    kind: str,
    num_chains: int,
    model,
    data: torch.Tensor | None = None,
    codec=None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Starting states for ``num_chains`` chains of an RBM.

    Args:
        kind: one of :data:`INITS`.
        model: the RBM (gives ``num_visible``, ``num_categories`` and the visible biases).
        data: ``(M, V)`` training states, needed by ``train`` and ``silhouettes``.
        codec: the string codec, needed by ``spaces`` (and used for the padding side).

    Returns:
        ``(num_chains, V)`` long tensor on the model's device.
    """
    if kind not in INITS:
        raise UsageError(f"unknown init {kind!r}; choose one of {', '.join(INITS)}")
    device = model.weight.device
    V, K = model.num_visible, model.num_categories
    shape = (num_chains, V)
    if kind in ("zeros", "padding"):
        return torch.zeros(shape, dtype=torch.long, device=device)
    if kind == "uniform":
        return torch.randint(0, K, shape, generator=generator, device=device)
    if kind == "uniform_chars":
        return _random_chars(shape, K, generator, device)
    if kind == "biases":
        # start-up time: the CLI imports sampling.init at start-up; categorical loads on first use
        from .categorical import sample_bernoulli, sample_categorical

        bias = model.visible_bias.detach()
        if model.categorical:
            return sample_categorical(bias.expand(num_chains, V, K), 1.0, generator)
        return sample_bernoulli(bias.expand(num_chains, V), 1.0, generator).long()
    if kind == "spaces":
        if codec is None or " " not in codec.alphabet:
            raise ConfigError(
                'init="spaces" needs a string model whose alphabet has a space; try init="padding"', "init"
            )
        return torch.full(shape, codec.alphabet.index(" ") + 1, dtype=torch.long, device=device)
    if kind == "chunks":
        lengths = torch.randint(1, V + 1, (num_chains, 1), generator=generator, device=device)
        position = torch.arange(V, device=device).unsqueeze(0)
        if codec is not None and codec.pad_side == "left":
            position = position.flip(1)
        chars = _random_chars(shape, K, generator, device)
        return torch.where(position < lengths, chars, torch.zeros_like(chars))
    # train / silhouettes
    if data is None or len(data) == 0:
        raise ConfigError(
            f'init="{kind}" needs training strings; the checkpoint or data has none, try init="uniform"', "init"
        )
    data = data.to(device)
    rows = torch.randint(0, data.shape[0], (num_chains,), generator=generator, device=device)
    states = data[rows]
    if kind == "train":
        return states
    chars = _random_chars(shape, K, generator, device)
    return torch.where(states != 0, chars, states)

"""Compiled CPU loops for the categorical RBM's training update (numba).

Why they exist: at the usual mini-batch sizes (tens of strings) one CD update is about sixty small
tensor operations, and in eager PyTorch on a CPU each costs more in dispatch than in arithmetic.
The parts of an update that eager PyTorch does worst are written here as loops, compiled once by
numba and cached on disk:

* :func:`hidden_preactivations`: ``c + W v`` of a batch of strings, a sum of V weight rows each;
* :func:`draw_and_gather`: the exact (float64 inverse-CDF) categorical draw of every position of
  every chain, the rule of :func:`gibbsdream.sampling.categorical.categorical_from_uniform`,
  followed at once by the new strings' hidden pre-activations;
* :func:`sgd_update`: the SGD step, adding each string's hidden statistics straight into the rows
  of the weights its characters use instead of building a gradient tensor first.

The dense parts (the visible product, softmax, sigmoid, random numbers) stay in PyTorch, which is
fast at those. The loops are serial on purpose: numba's parallel loops bring a second OpenMP
thread pool next to PyTorch's, and on the 2-core development machine the two pools' spinning
threads slowed PyTorch's matrix product as much as they sped up the loops (measured: the same
3.2x over scikit-learn either way).

All arrays are NumPy views sharing memory with the trainer's tensors, float32 or float64 alike;
shapes are given per function (``V`` positions, ``K`` categories, ``H`` hidden units). Nothing
here checks its inputs: :class:`gibbsdream.training.RBMTrainer` does.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_COMPILE = {"cache": True, "nogil": True, "boundscheck": False}


@njit(**_COMPILE)
def _gather(states, b, num_categories, weight_t, hidden_bias, out, out_row):  # pragma: no cover - compiled
    """``out[out_row] = sum_i weight_t[i*K + states[b, i]] + hidden_bias``, summed in the order of
    ``torch.nn.functional.embedding_bag`` followed by the bias (so the two engines agree)."""
    num_hidden = weight_t.shape[1]
    for j in range(num_hidden):
        out[out_row, j] = 0
    for i in range(states.shape[1]):
        row = i * num_categories + states[b, i]
        for j in range(num_hidden):
            out[out_row, j] += weight_t[row, j]
    for j in range(num_hidden):
        out[out_row, j] += hidden_bias[j]


@njit(**_COMPILE)
def hidden_preactivations(first, second, num_categories, weight_t, hidden_bias, out):  # pragma: no cover
    """Hidden pre-activations of two batches of strings, one after the other.

    ``first (n1, V)``, ``second (n2, V)`` int64 categories (``n2`` may be 0), ``weight_t (V*K, H)``,
    ``hidden_bias (H,)``; ``out (n1 + n2, H)`` receives ``c + W v`` of every string.
    """
    for b in range(first.shape[0]):
        _gather(first, b, num_categories, weight_t, hidden_bias, out, b)
    for b in range(second.shape[0]):
        _gather(second, b, num_categories, weight_t, hidden_bias, out, first.shape[0] + b)


@njit(**_COMPILE)
def _draw_chain(probs, uniforms, b, out):  # pragma: no cover - compiled
    """Draw every position of chain ``b`` (see :func:`draw_and_gather`); four positions at a time,
    because one position's running sum is a chain of dependent float64 adds and interleaving four
    keeps the adder busy (1,280 draws of 28 categories: 16 µs, against 24 µs one at a time)."""
    num_positions, num_categories = probs.shape[1], probs.shape[2]
    last = num_categories - 1
    cdf = np.empty((4, num_categories), np.float64)
    i = 0
    while i + 4 <= num_positions:
        s0 = s1 = s2 = s3 = 0.0
        for k in range(num_categories):
            s0 += probs[b, i, k]
            s1 += probs[b, i + 1, k]
            s2 += probs[b, i + 2, k]
            s3 += probs[b, i + 3, k]
            cdf[0, k], cdf[1, k], cdf[2, k], cdf[3, k] = s0, s1, s2, s3
        t0, t1 = uniforms[b, i] * s0, uniforms[b, i + 1] * s1
        t2, t3 = uniforms[b, i + 2] * s2, uniforms[b, i + 3] * s3
        n0 = n1 = n2 = n3 = 0
        for k in range(num_categories):
            n0 += cdf[0, k] <= t0
            n1 += cdf[1, k] <= t1
            n2 += cdf[2, k] <= t2
            n3 += cdf[3, k] <= t3
        out[b, i], out[b, i + 1], out[b, i + 2], out[b, i + 3] = min(n0, last), min(n1, last), min(n2, last), min(n3, last)
        i += 4
    while i < num_positions:
        running = 0.0
        for k in range(num_categories):
            running += probs[b, i, k]
            cdf[0, k] = running
        threshold = uniforms[b, i] * running
        below = 0
        for k in range(num_categories):
            below += cdf[0, k] <= threshold
        out[b, i] = min(below, last)
        i += 1


@njit(**_COMPILE)
def draw_and_gather(probs, uniforms, weight_t, hidden_bias, states_out, preactivations_out):  # pragma: no cover
    """Draw one category per ``(chain, position)``, then the new strings' hidden pre-activations.

    ``probs (B, V, K)`` non-negative weights (need not sum to 1) and ``uniforms (B, V)`` float64
    in [0, 1). ``states_out (B, V)`` int64 receives, per position, the first ``k`` whose float64
    running sum of the weights exceeds ``u * total`` (the number of running sums at or below it,
    capped at ``K - 1``): the float64 inverse CDF. ``preactivations_out (B, H)`` receives
    ``c + W v`` of the drawn strings (``weight_t (V*K, H)``, ``hidden_bias (H,)``).
    """
    num_categories = probs.shape[2]
    for b in range(probs.shape[0]):
        _draw_chain(probs, uniforms, b, states_out)
        _gather(states_out, b, num_categories, weight_t, hidden_bias, preactivations_out, b)


@njit(**_COMPILE)
def _add_position(i, states, hidden, scale, num_categories, weight_t, visible_bias):  # pragma: no cover
    """``weight_t[i*K + v[b, i]] += scale * hidden[b]`` and that row's visible bias ``+= scale``,
    for every string ``b``, in string order."""
    for b in range(states.shape[0]):
        row = i * num_categories + states[b, i]
        visible_bias[row] += scale
        for j in range(weight_t.shape[1]):
            weight_t[row, j] += scale * hidden[b, j]


@njit(**_COMPILE)
def _add_statistics(
    model_states, model_hidden, model_scale, data_states, data_hidden, data_scale, num_categories,
    weight_t, visible_bias, hidden_bias,
):  # pragma: no cover - compiled
    """Add ``scale * hidden[b]`` into the weight row of every (string, position) of both batches,
    ``scale`` into those rows' visible biases and ``scale * hidden[b]`` into the hidden biases."""
    for i in range(model_states.shape[1]):
        _add_position(i, model_states, model_hidden, model_scale, num_categories, weight_t, visible_bias)
        _add_position(i, data_states, data_hidden, data_scale, num_categories, weight_t, visible_bias)
    for b in range(model_hidden.shape[0]):
        for j in range(weight_t.shape[1]):
            hidden_bias[j] += model_scale * model_hidden[b, j]
    for b in range(data_hidden.shape[0]):
        for j in range(weight_t.shape[1]):
            hidden_bias[j] += data_scale * data_hidden[b, j]


@njit(**_COMPILE)
def _decay_velocity(momentum, weight_cost, weight_t, velocity_t, velocity_visible, velocity_hidden):  # pragma: no cover
    """``velocity = momentum * velocity + weight_cost * weight`` (the weight cost on weights only)."""
    for r in range(weight_t.shape[0]):
        for j in range(weight_t.shape[1]):
            velocity_t[r, j] = momentum * velocity_t[r, j] + weight_cost * weight_t[r, j]
        velocity_visible[r] *= momentum
    for j in range(velocity_hidden.shape[0]):
        velocity_hidden[j] *= momentum


@njit(**_COMPILE)
def _descend(learning_rate, weight_t, visible_bias, hidden_bias, velocity_t, velocity_visible, velocity_hidden):  # pragma: no cover
    """``parameter -= learning_rate * velocity`` for the three parameters."""
    for r in range(weight_t.shape[0]):
        for j in range(weight_t.shape[1]):
            weight_t[r, j] -= learning_rate * velocity_t[r, j]
        visible_bias[r] -= learning_rate * velocity_visible[r]
    for j in range(hidden_bias.shape[0]):
        hidden_bias[j] -= learning_rate * velocity_hidden[j]


def sgd_update(
    model_states, model_hidden, data_states, data_hidden, coefficients, num_categories,
    weight_t, visible_bias, hidden_bias, velocity_t, velocity_visible, velocity_hidden,
) -> None:
    """One step of SGD with momentum on the contrastive-divergence gradient, in place.

    The gradient of ``mean F(data) - mean F(model)`` in the weight row of (position i, category k)
    is the mean over model strings with ``v_i = k`` of their hidden probabilities minus the same
    over data strings (see :meth:`gibbsdream.RBM.contrastive_gradients`). The rule is
    torch.optim.SGD's: ``velocity = momentum * velocity + gradient + weight_cost * weight``
    (weights only), then ``parameter -= learning_rate * velocity``.

    ``*_states (n, V)`` int64 categories; ``*_hidden (n, H)`` hidden probabilities given them;
    ``coefficients`` = [learning_rate, momentum, weight_cost, 1 / n_model, -1 / n_data] in the
    parameters' dtype, so that the loops stay in that precision; ``weight_t (V*K, H)``,
    ``visible_bias (V*K,)``, ``hidden_bias (H,)`` and three velocity arrays of the same shapes.
    Without momentum and weight cost the velocity is not touched and the step goes straight into
    the rows that the batch uses.
    """
    learning_rate, momentum, weight_cost, model_scale, data_scale = coefficients
    if momentum == 0 and weight_cost == 0:
        _add_statistics(model_states, model_hidden, -learning_rate * model_scale, data_states, data_hidden,
                        -learning_rate * data_scale, num_categories, weight_t, visible_bias, hidden_bias)
        return
    _decay_velocity(momentum, weight_cost, weight_t, velocity_t, velocity_visible, velocity_hidden)
    _add_statistics(model_states, model_hidden, model_scale, data_states, data_hidden, data_scale, num_categories,
                    velocity_t, velocity_visible, velocity_hidden)
    _descend(learning_rate, weight_t, visible_bias, hidden_bias, velocity_t, velocity_visible, velocity_hidden)

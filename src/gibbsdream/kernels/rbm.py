"""Compiled CPU loops for categorical RBMs (numba), run by several threads at once: training
(:func:`train_worker`) and block Gibbs sampling (:func:`sample_worker`), with the named bundles
of arrays they take (:class:`TrainRun`, :class:`Parameters`, ...) and the checks of those bundles
(:func:`check_train_arguments`, :func:`check_sample_arguments`).

Why it exists: at the usual mini-batch sizes (tens of strings) one CD update is about sixty small
tensor operations, and in eager PyTorch on a CPU each costs more in dispatch than in arithmetic;
the matrix product, the only large operation, was split by PyTorch's thread pool across cores
that then passed the weights back and forth between their caches (measured on the 2-core
development machine: the parts of an update took 395 µs one by one and 750 µs in the loop).

So each of ``T`` threads owns a contiguous block of the hidden units, that is a block of columns
of the ``(V*K, H)`` weights, and runs whole mini-batch updates on it (:func:`train_worker`):

1. hidden pre-activations of the data and the chains: a sum of V weight rows per string
   (the one-hot structure), restricted to its own columns; sigmoid; Bernoulli draws;
2. its share of the visible logits, ``h[:, own] @ W[own, :]``, by the BLAS ``sgemm`` of the MKL
   inside PyTorch, one thread each; --- wait for all threads ---
3. for its share of the chains: the logits summed over the threads' shares, softmax weights and
   the float64 inverse-CDF draw of every position; --- wait for all threads ---
4. hidden probabilities of the new chains (own columns), and the SGD step on its own columns,
   added straight into the weight rows that the batch uses.

The weights a thread writes are the ones it reads, so they stay in its core's cache; the threads
meet twice per Gibbs step. The random numbers are drawn by the calling thread from the trainer's
PyTorch generator, a chunk of updates at a time and in the PyTorch engine's order, so the two
engines use the same numbers; the other threads wait for each chunk (:mod:`.threads`).

Rounding: ``exp`` is a Cephes-style polynomial (within 2 ulp of the exact value, checked by the
tests) written so that LLVM vectorises it, and the logits are summed in another order than
PyTorch's ``addmm``. Given the same parameters and random numbers the two engines' draws then
differ about once in 23 million categorical draws and once in several billion hidden ones
(measured on random logits); the parameters themselves drift apart by float rounding (the step
adds the statistics in another order), so over a long run the chains of the two engines part.

Threads and memory: the meeting counters, who writes them and the ordering the waits rely on
are set out in :mod:`.threads`; what each worker writes, and when the others may read it, in
:func:`train_worker` and :func:`sample_worker`. The compiled loops check no bounds and allocate
nothing: the callers build the bundles once per call, and :func:`.threads.run_workers` runs the
checks below (shapes, dtypes, C order, categories in range) in each worker's thread before its
loop starts; a thread that fails sets the call-off flag that ends every wait.

Every compiled function is in this one file on purpose: numba's cache (``cache=True``) checks
only the timestamp of the file that defines a function, so a compiled function called from
another file could be loaded stale after that file changed. The external functions it declares
are in :mod:`.native` (after editing those declarations, delete ``kernels/__pycache__/*.nb?``).

Importing this module raises ImportError when numba is missing, the machine is not x86-64, or
PyTorch's library does not export MKL's ``sgemm_`` (:mod:`.native`); the trainer and the sampler
then use their PyTorch engines (:func:`gibbsdream.kernels.rbm_loops`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit

from .native import BLAS_THREADS, DGEMM, SET_BLAS_THREADS, SGEMM, SYSCALL, YIELD, relax
from .threads import FUTEX, FUTEX_WAIT_PRIVATE, FUTEX_WAKE_PRIVATE, SLEEPS, Part, counter_span

_COMPILE = {"cache": True, "nogil": True, "boundscheck": False, "error_model": "numpy"}

# ---- the bundles -----------------------------------------------------------------------------
# Shapes: V positions, K categories, R = V*K rows of the weights, H hidden units, T threads,
# w = last - first the hidden units of one worker, C chains, n strings a batch, U steps a chunk,
# S Gibbs steps an update (training) or sweeps in all (sampling). F is the parameters' dtype,
# float32 or float64. Every array is C-contiguous (the BLAS call and the slices assume it).


class Parameters(NamedTuple):
    """An RBM's parameters in the loops' layout, or their velocities (the same shapes), or a
    worker's copy of its columns with the shared visible biases (``H`` is then ``w``)."""

    weight_t: np.ndarray  # (R, H) F: the weights transposed, row i*K + k for position i, category k
    visible_bias: np.ndarray  # (R,) F
    hidden_bias: np.ndarray  # (H,) F


class Uniforms(NamedTuple):
    """One chunk of random numbers in [0, 1), drawn by the calling thread before the workers read
    them (:func:`.threads.run_workers`): step ``s`` uses row ``s % U``."""

    hidden: np.ndarray  # F: training (U, S, C, H); sampling (U, C, H)
    visible: np.ndarray  # float64: training (U, S, C, V); sampling (U, C, V)


class GemmScratch(NamedTuple):
    """A worker's arguments for the Fortran BLAS call, which takes every argument by address."""

    ints: np.ndarray  # (6,) int32: m, n, k, lda, ldb, ldc
    scalars: np.ndarray  # (2,) F: alpha, beta
    chars: np.ndarray  # (2,) uint8: transa, transb


class TrainRun(NamedTuple):
    """What :func:`train_worker` trains on, and the step's settings."""

    data: np.ndarray  # (N*n, V) int64: batch g is rows [g*n, (g+1)*n)
    chains: np.ndarray  # (C, V) int64: the persistent chains, updated in place; for CD (C = n) scratch
    batch_size: int  # n
    num_categories: int  # K
    persistent: bool
    coefficients: np.ndarray  # (5,) F: learning rate, momentum, weight cost, 1/C, -1/n


class TrainWorkspace(NamedTuple):
    """One training worker's own arrays: its columns while it runs, and scratch."""

    own_weight_t: np.ndarray  # (R, w) F
    own_hidden_bias: np.ndarray  # (w,) F
    own_velocity_t: np.ndarray  # (R, w) F
    own_velocity_hidden: np.ndarray  # (w,) F
    probs: np.ndarray  # ((n + C) * w,) F: hidden probabilities of the batch, then of the chains
    model_hidden: np.ndarray  # (C * w,) F: hidden probabilities of the chains after a Gibbs step
    samples: np.ndarray  # (C, w) F: hidden states
    exponents: np.ndarray  # (max((n + C) * w, R),) int32: exp's scratch
    logits: np.ndarray  # (R,) F: one chain's visible logits
    cdf: np.ndarray  # (4, K) float64: draw_categories' scratch
    gemm: GemmScratch


class SampleRun(NamedTuple):
    """The chains :func:`sample_worker` runs, and their temperatures."""

    states: np.ndarray  # (C, V) int64, updated in place
    known: np.ndarray  # (C, V) uint8: the clamped positions; (0, 0): none
    clamped: np.ndarray  # (C, V) int64: their values; (0, 0) with known
    num_categories: int  # K
    temperatures: np.ndarray  # (S,) float64: of the hidden half of each sweep (0 = argmax)
    visible_temperatures: np.ndarray  # (S,) float64: of the visible half (0 = argmax)


class Energy(NamedTuple):
    """The free-energy trace, and the threads' shares of it."""

    trace: np.ndarray  # (S + 1, C) F: of every chain before each sweep and at the end
    shares: np.ndarray  # (T, C) float64: row t written by worker t only, read by all after a meeting


class SampleWorkspace(NamedTuple):
    """One sampling worker's own arrays: its columns while it runs, and scratch."""

    own_weight_t: np.ndarray  # (R, w) F
    own_hidden_bias: np.ndarray  # (w,) F
    pre: np.ndarray  # (C * w,) F: hidden pre-activations, then probabilities
    work: np.ndarray  # (C * w,) F: softplus scratch
    exponents: np.ndarray  # (max(C * w, R),) int32
    samples: np.ndarray  # (C, w) F: hidden states
    logits: np.ndarray  # (R,) F
    cdf: np.ndarray  # (4, K) float64
    gemm: GemmScratch


def gemm_scratch(dtype) -> GemmScratch:
    return GemmScratch(np.empty(6, np.int32), np.empty(2, dtype), np.empty(2, np.uint8))


def train_workspace(part: Part, batch_size: int, num_chains: int, rows: int, num_categories: int, dtype):
    """A :class:`TrainWorkspace` for worker ``part`` (``rows = V*K``)."""
    width = part.last - part.first
    return TrainWorkspace(
        own_weight_t=np.empty((rows, width), dtype),
        own_hidden_bias=np.empty(width, dtype),
        own_velocity_t=np.empty((rows, width), dtype),
        own_velocity_hidden=np.empty(width, dtype),
        probs=np.empty((batch_size + num_chains) * width, dtype),
        model_hidden=np.empty(num_chains * width, dtype),
        samples=np.empty((num_chains, width), dtype),
        exponents=np.empty(max((batch_size + num_chains) * width, rows), np.int32),
        logits=np.empty(rows, dtype),
        cdf=np.empty((4, num_categories), np.float64),
        gemm=gemm_scratch(dtype),
    )


def sample_workspace(part: Part, num_chains: int, rows: int, num_categories: int, dtype) -> SampleWorkspace:
    """A :class:`SampleWorkspace` for worker ``part`` (``rows = V*K``)."""
    width = part.last - part.first
    return SampleWorkspace(
        own_weight_t=np.empty((rows, width), dtype),
        own_hidden_bias=np.empty(width, dtype),
        pre=np.empty(num_chains * width, dtype),
        work=np.empty(num_chains * width, dtype),
        exponents=np.empty(max(num_chains * width, rows), np.int32),
        samples=np.empty((num_chains, width), dtype),
        logits=np.empty(rows, dtype),
        cdf=np.empty((4, num_categories), np.float64),
        gemm=gemm_scratch(dtype),
    )


# ---- arithmetic ----------------------------------------------------------------------------------

# Cephes' single-precision exp: exp(x) = 2^n * exp(r), x = n log 2 + r, |r| <= log(2) / 2.
_F = np.float32
_LOG2E, _LN2_HIGH, _LN2_LOW = _F(1.44269504088896341), _F(0.693359375), _F(-2.12194440e-4)
_C0, _C1, _C2 = _F(1.9875691500e-4), _F(1.3981999507e-3), _F(8.3334519073e-3)
_C3, _C4, _C5 = _F(4.1665795894e-2), _F(1.6666665459e-1), _F(5.0000001201e-1)
_EXP_LOW, _EXP_HIGH, _ONE = _F(-87.0), _F(88.0), _F(1.0)
_ROUNDER = _F(12582912.0)  # 1.5 * 2^23: adding and subtracting it rounds a float32 to an integer


@njit(**_COMPILE)
def _exp(values, start, stop, exponents):  # pragma: no cover - compiled
    """``values[start:stop] = exp(values[start:stop])`` in place; ``exponents`` int32 scratch as long.

    float32: the polynomial, then ``2^n`` added into the exponent bits by a second integer pass
    (two plain loops that LLVM vectorises: 16K values in 7 µs here, as fast as PyTorch's; a call
    to the C library's expf per value took 47 µs). Inputs are clamped to [-87, 88], the range
    where the result is a normal float32. float64: the C library's exp.
    """
    if values.itemsize != 4:
        for i in range(start, stop):
            values[i] = math.exp(values[i])
        return
    for i in range(start, stop):
        x = values[i]
        x = _EXP_LOW if x < _EXP_LOW else x
        x = _EXP_HIGH if x > _EXP_HIGH else x
        n = (x * _LOG2E + _ROUNDER) - _ROUNDER
        r = x - n * _LN2_HIGH - n * _LN2_LOW
        p = ((((_C0 * r + _C1) * r + _C2) * r + _C3) * r + _C4) * r + _C5
        values[i] = p * r * r + r + _ONE
        exponents[i] = np.int32(n) << 23
    bits = values.view(np.int32)
    for i in range(start, stop):
        bits[i] += exponents[i]


@njit(**_COMPILE)
def sigmoid(values, count, exponents):  # pragma: no cover - compiled
    """``values[:count] = 1 / (1 + exp(-values[:count]))`` in place (flat arrays)."""
    for i in range(count):
        values[i] = -values[i]
    _exp(values, 0, count, exponents)
    for i in range(count):
        values[i] = _ONE / (_ONE + values[i])


@njit(**_COMPILE)
def _gather(states, b, num_categories, weight_t, hidden_bias, out):  # pragma: no cover - compiled
    """``out[j] = c_j + sum_i weight_t[i*K + states[b, i], j]``: summed in
    ``torch.nn.functional.embedding_bag``'s order, then the bias.

    Here and below the loops run over slices (``row = weight_t[r]``, ``row[j]``) rather than
    offset indices (``a[offset + j]``): numba cannot tell that such an index is never negative,
    and its wrap-around test kept LLVM from vectorising the loop (measured: 10x slower)."""
    width = weight_t.shape[1]
    for j in range(width):
        out[j] = 0
    for i in range(states.shape[1]):
        row = weight_t[i * num_categories + states[b, i]]
        for j in range(width):
            out[j] += row[j]
    for j in range(width):
        out[j] += hidden_bias[j]


@njit(**_COMPILE)
def hidden_preactivations(states, num_categories, weight_t, hidden_bias, out):  # pragma: no cover - compiled
    """``(n, V)`` int64 categories -> ``out`` flat ``(n * w,)``: ``c + W v`` of every string
    (``weight_t (V*K, w)`` contiguous, ``hidden_bias (w,)``: all hidden units or a block of them)."""
    width = weight_t.shape[1]
    for b in range(states.shape[0]):
        _gather(states, b, num_categories, weight_t, hidden_bias, out[b * width : (b + 1) * width])


@njit(**_COMPILE)
def draw_categories(weights, uniforms, num_categories, cdf, out):  # pragma: no cover - compiled
    """One category per position from non-negative ``weights (V*K,)`` (need not sum to 1) and
    ``uniforms (V,)`` float64 in [0, 1): ``out[i]`` is the number of float64 running sums of the
    position's weights at or below ``u_i * total``, capped at ``K - 1``, the rule of
    :func:`gibbsdream.sampling.categorical.categorical_from_uniform`. ``cdf (4, K)`` float64
    scratch: four positions go at once, because one position's running sum is a chain of
    dependent adds and four keep the adder busy (1,280 draws of 28 categories: 16 µs, not 24)."""
    num_positions, last = uniforms.shape[0], num_categories - 1
    i = 0
    while i + 4 <= num_positions:
        s0 = s1 = s2 = s3 = 0.0
        base = i * num_categories
        for k in range(num_categories):
            s0 += weights[base + k]
            s1 += weights[base + num_categories + k]
            s2 += weights[base + 2 * num_categories + k]
            s3 += weights[base + 3 * num_categories + k]
            cdf[0, k], cdf[1, k], cdf[2, k], cdf[3, k] = s0, s1, s2, s3
        t0, t1, t2, t3 = uniforms[i] * s0, uniforms[i + 1] * s1, uniforms[i + 2] * s2, uniforms[i + 3] * s3
        n0 = n1 = n2 = n3 = 0
        for k in range(num_categories):
            n0 += cdf[0, k] <= t0
            n1 += cdf[1, k] <= t1
            n2 += cdf[2, k] <= t2
            n3 += cdf[3, k] <= t3
        out[i], out[i + 1], out[i + 2], out[i + 3] = min(n0, last), min(n1, last), min(n2, last), min(n3, last)
        i += 4
    while i < num_positions:
        running = 0.0
        for k in range(num_categories):
            running += weights[i * num_categories + k]
            cdf[0, k] = running
        threshold = uniforms[i] * running
        below = 0
        for k in range(num_categories):
            below += cdf[0, k] <= threshold
        out[i] = min(below, last)
        i += 1


@njit(**_COMPILE)
def _bernoulli(uniforms, probs, first, last, samples):  # pragma: no cover - compiled
    """``samples[c, j] = 1 if uniforms[c, first + j] < probs[c*w + j] else 0``: this thread's hidden
    units of every chain (``uniforms (C, H)``, ``probs`` flat ``(C * w,)``, ``samples (C, w)``)."""
    width = last - first
    for c in range(samples.shape[0]):
        row, chain, sample = uniforms[c, first:last], probs[c * width : (c + 1) * width], samples[c]
        for j in range(width):
            sample[j] = 1 if row[j] < chain[j] else 0


@njit(**_COMPILE)
def _summed_logits(c, visible_bias, partials, logits):  # pragma: no cover - compiled
    """``logits (R,)`` of chain ``c``: the visible biases plus every thread's share ``partials[t, c]``."""
    for r in range(logits.shape[0]):
        logits[r] = visible_bias[r]
    for t in range(partials.shape[0]):
        share = partials[t, c]
        for r in range(logits.shape[0]):
            logits[r] += share[r]


@njit(**_COMPILE)
def _draw_softmax(logits, scale, uniforms, num_categories, exponents, cdf, out):  # pragma: no cover - compiled
    """Draw every position of one chain from ``softmax(scale * logits)`` (``scale = 1 / T``):
    unnormalised weights ``exp(scale * z - max)`` per position, then :func:`draw_categories`.
    ``logits`` is overwritten."""
    rows = logits.shape[0]
    if scale != 1:
        for r in range(rows):
            logits[r] = logits[r] * scale
    for i in range(rows // num_categories):
        base = i * num_categories
        largest = logits[base]
        for k in range(1, num_categories):
            largest = max(largest, logits[base + k])
        for k in range(num_categories):
            logits[base + k] -= largest
    _exp(logits, 0, rows, exponents)
    draw_categories(logits, uniforms, num_categories, cdf, out)


# ---- meetings: the compiled half of .threads' contract -------------------------------------------
# counters (T + 2, span) int64 from .threads.meeting_counters: row t worker t's meetings, row T
# the steps whose random numbers are ready, the last row the call-off flag; column 0 counts.


_SPINS = 4000  # turns of `pause` before a waiter sleeps: tens of µs, longer than a quiet meeting's wait


@njit(**_COMPILE)
def _address(counters, row):  # pragma: no cover - compiled
    """The address of ``counters[row, 0]``: its low 32 bits are the futex (x86 is little-endian)."""
    return counters.ctypes.data + row * counters.strides[0]


@njit(**_COMPILE)
def _sleep(counters, row, seen):  # pragma: no cover - compiled
    """Sleep until ``counters[row]`` is no longer ``seen``, someone wakes this thread, or the
    timeout in the call-off row passes (.threads.SLEEP_NS); at once if it has already moved."""
    if SLEEPS:
        timeout = _address(counters, counters.shape[0] - 1) + 16  # columns 2 and 3: a timespec
        SYSCALL(FUTEX, _address(counters, row), FUTEX_WAIT_PRIVATE, seen & 0xFFFFFFFF, timeout, 0, 0)
    else:
        YIELD()


@njit(**_COMPILE)
def _wake(counters, row):  # pragma: no cover - compiled
    """Wake every thread asleep on ``counters[row]`` (after this thread moved it)."""
    if SLEEPS:
        SYSCALL(FUTEX, _address(counters, row), FUTEX_WAKE_PRIVATE, 0x7FFFFFFF, 0, 0, 0)


@njit(**_COMPILE)
def _wait_until(counters, row, count):  # pragma: no cover - compiled
    """Wait until ``counters[row]`` reaches ``count``: spin a little, then sleep on it (.threads
    notes); False when the run was called off instead (the last row set, by a thread that failed)."""
    call_off = counters.shape[0] - 1
    turns = 0
    while True:
        seen = counters[row, 0]  # read afresh each turn: relax() below may write any memory
        if seen >= count:
            break
        if counters[call_off, 0]:
            return False
        if turns < _SPINS:
            relax()
            turns += 1
        else:
            _sleep(counters, row, seen)
    relax()  # no load after the wait is moved above it (and x86 keeps loads in order)
    return True


@njit(**_COMPILE)
def _wait_for_all(counters, thread, num_threads, count):  # pragma: no cover - compiled
    """Mark this thread's arrival at meeting number ``count``, wake whoever sleeps on it, and
    wait for the others; False when the run was called off instead. Row ``thread`` has this one
    writer (``.threads.Part``)."""
    relax()  # every store before it is emitted before the counter's
    counters[thread, 0] = count  # x86: seen by another core only after those stores
    _wake(counters, thread)
    for other in range(num_threads):  # noqa: SIM110 (numba compiles no generator expressions)
        if not _wait_until(counters, other, count):
            return False
    return True


@njit(**_COMPILE)
def _wait_for_numbers(counters, num_threads, step):  # pragma: no cover - compiled
    """Wait until the calling thread has drawn the random numbers of ``step`` (row T)."""
    return _wait_until(counters, num_threads, step + 1)


@njit(**_COMPILE)
def _one_blas_thread():  # pragma: no cover - compiled
    """Make this thread's BLAS calls run on this thread alone, and check that MKL took it: the
    workers split the products among themselves, and an MKL that spread each one over its own
    pool would put two threads on every core. Returns the setting to restore."""
    previous = SET_BLAS_THREADS(1)
    if BLAS_THREADS() != 1:
        SET_BLAS_THREADS(previous)
        raise RuntimeError("MKL does not run this thread's BLAS calls on one thread as asked")
    return previous


@njit(**_COMPILE)
def _visible_product(samples, weight_t, out, gemm):  # pragma: no cover - compiled
    """``out (C, V*K) = samples (C, w) @ weight_t.T`` by the Fortran BLAS (``weight_t (V*K, w)``;
    all three C-contiguous, which the leading dimensions below assume).

    Row-major ``out`` is the column-major ``(V*K, C)`` product ``weight_t @ samples.T``;
    ``weight_t``'s rows read column-major are ``weight_t.T`` with leading dimension w, hence 'T', 'N'.
    """
    rows, chains, width = weight_t.shape[0], samples.shape[0], weight_t.shape[1]
    gemm_ints, gemm_scalars, gemm_chars = gemm.ints, gemm.scalars, gemm.chars
    gemm_ints[0], gemm_ints[1], gemm_ints[2] = rows, chains, width
    gemm_ints[3], gemm_ints[4], gemm_ints[5] = width, width, rows
    gemm_scalars[0], gemm_scalars[1] = 1, 0
    gemm_chars[0], gemm_chars[1] = 84, 78  # 'T', 'N'
    size = weight_t.itemsize
    ints, scalars, chars = gemm_ints.ctypes.data, gemm_scalars.ctypes.data, gemm_chars.ctypes.data
    args = (
        chars,
        chars + 1,
        ints,
        ints + 4,
        ints + 8,
        scalars,
        weight_t.ctypes.data,
        ints + 12,
        samples.ctypes.data,
        ints + 16,
        scalars + size,
        out.ctypes.data,
        ints + 20,
    )
    if size == 4:
        SGEMM(*args)
    else:
        DGEMM(*args)


# ---- training -----------------------------------------------------------------------------------


@njit(**_COMPILE)
def _add_statistics(states, hidden, scale, num_categories, target, with_visible):  # pragma: no cover - compiled
    """``scale * hidden[b]`` into the weight row of every (string ``b``, position) of the batch
    (``target``: a :class:`Parameters` of a worker's columns, ``weight_t (V*K, w)``) and into the
    hidden biases; ``scale`` into the rows' visible biases when ``with_visible`` (one thread does
    those). ``hidden`` is flat ``(n * w,)``."""
    weight_t, visible_bias, hidden_bias = target.weight_t, target.visible_bias, target.hidden_bias
    width = weight_t.shape[1]
    for i in range(states.shape[1]):
        for b in range(states.shape[0]):
            row = i * num_categories + states[b, i]
            if with_visible:
                visible_bias[row] += scale
            weights, statistics = weight_t[row], hidden[b * width : (b + 1) * width]
            for j in range(width):
                weights[j] += scale * statistics[j]
    for b in range(states.shape[0]):
        statistics = hidden[b * width : (b + 1) * width]
        for j in range(width):
            hidden_bias[j] += scale * statistics[j]


@njit(**_COMPILE)
def _sgd_step(
    model_states, model_hidden, data_states, data_hidden, coefficients, num_categories, with_visible, params, velocity
):  # pragma: no cover - compiled
    """SGD with momentum on a worker's columns (torch.optim.SGD's rule, see :func:`train_worker`):
    ``params`` and ``velocity`` are :class:`Parameters` of its columns; their visible biases are
    shared, and stepped only when ``with_visible``."""
    learning_rate, momentum, weight_cost, model_scale, data_scale = coefficients
    if momentum == 0 and weight_cost == 0:  # straight into the rows the batch uses
        _add_statistics(model_states, model_hidden, -learning_rate * model_scale, num_categories, params, with_visible)
        _add_statistics(data_states, data_hidden, -learning_rate * data_scale, num_categories, params, with_visible)
        return
    weight_t, visible_bias, hidden_bias = params.weight_t, params.visible_bias, params.hidden_bias
    velocity_t, velocity_visible, velocity_hidden = velocity.weight_t, velocity.visible_bias, velocity.hidden_bias
    width = weight_t.shape[1]
    for r in range(weight_t.shape[0]):
        weights, speed = weight_t[r], velocity_t[r]
        for j in range(width):
            speed[j] = momentum * speed[j] + weight_cost * weights[j]
    for j in range(width):
        velocity_hidden[j] *= momentum
    if with_visible:
        for r in range(velocity_visible.shape[0]):
            velocity_visible[r] *= momentum
    _add_statistics(model_states, model_hidden, model_scale, num_categories, velocity, with_visible)
    _add_statistics(data_states, data_hidden, data_scale, num_categories, velocity, with_visible)
    for r in range(weight_t.shape[0]):
        weights, speed = weight_t[r], velocity_t[r]
        for j in range(width):
            weights[j] -= learning_rate * speed[j]
    for j in range(width):
        hidden_bias[j] -= learning_rate * velocity_hidden[j]
    if with_visible:
        for r in range(visible_bias.shape[0]):
            visible_bias[r] -= learning_rate * velocity_visible[r]


@njit(**_COMPILE)
def _copy_columns(source, first, last, destination, back):  # pragma: no cover - compiled
    """``destination (rows, last - first) = source[:, first:last]``, or the reverse when ``back``."""
    for r in range(source.shape[0]):
        shared, own = source[r, first:last], destination[r]
        if back:
            shared[:] = own
        else:
            own[:] = shared


@njit(**_COMPILE)
def train_worker(part, first_update, last_update, run, uniforms, model, velocity, meeting, workspace):
    """Worker ``part``: updates ``[first_update, last_update)`` of CD-k / PCD-k on its hidden
    units, with ``run`` (:class:`TrainRun`), ``uniforms`` (:class:`Uniforms`: update ``g`` uses
    row ``g % U`` once the calling thread has drawn it), the shared ``model`` and ``velocity``
    (:class:`Parameters`), ``meeting`` (:class:`.threads.Meeting`) and its own ``workspace``
    (:class:`TrainWorkspace`); :func:`check_train_arguments` states the shapes.

    Who writes what, and when the others read it (what the two meetings per Gibbs step order):

    * its columns of the weights and hidden biases and of their velocities: only this worker,
      in a private copy written back at the end (threads that wrote disjoint columns of the one
      shared array ran at half speed, measured: 353 µs an update against 124 with private
      copies, gathers and steps alone; the hardware prefetchers read past the end of one
      thread's part of each row into the next thread's);
    * the visible biases and their velocities: worker 0 alone, in its SGD step at the end of an
      update, after the last meeting of that update (the last time the others read them) and
      before its first meeting of the next (the first time they read them again);
    * its logit share ``meeting.logit_shares[thread]``: before the first meeting of a Gibbs
      step; every worker reads every share between that meeting and the second;
    * the chains ``[thread*C//T, (thread+1)*C//T)`` of ``run.chains``: between the first and
      the second meeting; every worker reads every chain after the second and before the next
      step's first.

    The step is torch.optim.SGD's: ``velocity = momentum * velocity + gradient + weight_cost *
    weight`` (weights only), ``parameter -= learning_rate * velocity``; the gradient in the row of
    (position i, category k) is the mean hidden probabilities of the chains with ``v_i = k`` minus
    those of the data.
    """
    previous_blas_threads = _one_blas_thread()
    _train_updates(part, first_update, last_update, run, uniforms, model, velocity, meeting, workspace)
    SET_BLAS_THREADS(previous_blas_threads)  # also after a call-off: the calling thread goes on in PyTorch


# Inlined by numba (its IR, before typing) rather than called: numba links a called function's
# code into each caller and optimises it again there, and this extra level made the cold compile
# about 40% longer (measured: 24 s instead of 16 for the first training call).
@njit(inline="always", **_COMPILE)
def _train_updates(part, first_update, last_update, run, uniforms, model, velocity, meeting, workspace):
    """The loop of :func:`train_worker`; returns early when the run is called off."""
    thread, num_threads, first, last = part.thread, part.num_threads, part.first, part.last
    data, chains, batch_size, num_categories = run.data, run.chains, run.batch_size, run.num_categories
    persistent, coefficients = run.persistent, run.coefficients
    hidden_uniforms, visible_uniforms = uniforms.hidden, uniforms.visible
    counters, partials = meeting.counters, meeting.logit_shares
    probs, model_hidden, samples = workspace.probs, workspace.model_hidden, workspace.samples
    exponents, logits, cdf, gemm = workspace.exponents, workspace.logits, workspace.cdf, workspace.gemm
    own = Parameters(workspace.own_weight_t, model.visible_bias, workspace.own_hidden_bias)
    own_velocity = Parameters(workspace.own_velocity_t, velocity.visible_bias, workspace.own_velocity_hidden)

    per_chunk, num_steps, num_chains = hidden_uniforms.shape[0], hidden_uniforms.shape[1], hidden_uniforms.shape[2]
    width = last - first
    my_first_chain, my_last_chain = thread * num_chains // num_threads, (thread + 1) * num_chains // num_threads
    _copy_columns(model.weight_t, first, last, own.weight_t, False)
    _copy_columns(velocity.weight_t, first, last, own_velocity.weight_t, False)
    own.hidden_bias[:] = model.hidden_bias[first:last]
    own_velocity.hidden_bias[:] = velocity.hidden_bias[first:last]
    meeting_count = 2 * num_steps * first_update  # two meetings per Gibbs step, counted from the first update
    for g in range(first_update, last_update):
        if not _wait_for_numbers(counters, num_threads, g):
            return
        u = g % per_chunk
        batch = data[g * batch_size : (g + 1) * batch_size]
        hidden_preactivations(batch, num_categories, own.weight_t, own.hidden_bias, probs)
        chain_probs = probs[: batch_size * width]  # CD starts its chains at the data
        if persistent:
            chain_probs = probs[batch_size * width : (batch_size + num_chains) * width]
            hidden_preactivations(chains, num_categories, own.weight_t, own.hidden_bias, chain_probs)
        sigmoid(probs, (batch_size + (num_chains if persistent else 0)) * width, exponents)
        for s in range(num_steps):
            _bernoulli(hidden_uniforms[u, s], chain_probs, first, last, samples)
            _visible_product(samples, own.weight_t, partials[thread], gemm)
            meeting_count += 1
            if not _wait_for_all(counters, thread, num_threads, meeting_count):
                return
            for c in range(my_first_chain, my_last_chain):
                _summed_logits(c, own.visible_bias, partials, logits)
                _draw_softmax(logits, 1.0, visible_uniforms[u, s, c], num_categories, exponents, cdf, chains[c])
            meeting_count += 1
            if not _wait_for_all(counters, thread, num_threads, meeting_count):
                return
            hidden_preactivations(chains, num_categories, own.weight_t, own.hidden_bias, model_hidden)
            sigmoid(model_hidden, num_chains * width, exponents)
            chain_probs = model_hidden
        _sgd_step(chains, model_hidden, batch, probs, coefficients, num_categories, thread == 0, own, own_velocity)
    _copy_columns(model.weight_t, first, last, own.weight_t, True)
    _copy_columns(velocity.weight_t, first, last, own_velocity.weight_t, True)
    model.hidden_bias[first:last] = own.hidden_bias
    velocity.hidden_bias[first:last] = own_velocity.hidden_bias


# ---- sampling: block Gibbs sweeps with temperature, the same threads and meetings ----------------

_TWO = _F(2.0)
_ATANH_TERMS = tuple(_F(1.0 / n) for n in (13, 11, 9, 7, 5, 3))


@njit(**_COMPILE)
def _softplus_sums(pre, num_rows, width, work, exponents, sums):  # pragma: no cover - compiled
    """``sums[r] = sum_j softplus(pre[r*w + j])`` (float64 sums) for ``r < num_rows``, with
    ``softplus(x) = max(x, 0) + log1p(exp(-|x|))`` and ``log1p(y) = 2 atanh(y / (2 + y))`` by its
    odd series to ``z^13`` (``z <= 1/3``: the next term is below 1e-8); ``work`` and ``exponents``
    scratch of ``num_rows * w``. Vectorised like :func:`_exp` (float64 models: the C library)."""
    count = num_rows * width
    if pre.itemsize != 4:
        for i in range(count):
            work[i] = max(pre[i], 0.0) + math.log1p(math.exp(-abs(pre[i])))
    else:
        for i in range(count):
            work[i] = -abs(pre[i])
        _exp(work, 0, count, exponents)
        c13, c11, c9, c7, c5, c3 = _ATANH_TERMS
        for i in range(count):
            y = work[i]
            z = y / (_TWO + y)
            z2 = z * z
            series = (((((c13 * z2 + c11) * z2 + c9) * z2 + c7) * z2 + c5) * z2 + c3) * z2 + _ONE
            x = pre[i]
            work[i] = (x if x > 0 else _F(0.0)) + _TWO * z * series
    for r in range(num_rows):
        total = 0.0
        row = work[r * width : (r + 1) * width]
        for j in range(width):
            total += row[j]
        sums[r] = total


@njit(**_COMPILE)
def _free_energy_partials(
    states, num_categories, own_weight_t, own_hidden_bias, pre, work, exponents, sums
):  # pragma: no cover
    """This thread's share of every chain's free energy: ``sums[c] = sum_own softplus(c + W v)``;
    leaves the hidden pre-activations in ``pre``."""
    hidden_preactivations(states, num_categories, own_weight_t, own_hidden_bias, pre)
    _softplus_sums(pre, states.shape[0], own_weight_t.shape[1], work, exponents, sums)


@njit(**_COMPILE)
def _free_energy(states, c, num_categories, visible_bias, energy_partials):  # pragma: no cover - compiled
    """``F(v_c) = -(b . v_c + sum over threads of their softplus sums)``, at T = 1."""
    visible = 0.0
    for i in range(states.shape[1]):
        visible += visible_bias[i * num_categories + states[c, i]]
    hidden = 0.0
    for t in range(energy_partials.shape[0]):
        hidden += energy_partials[t, c]
    return -(visible + hidden)


@njit(**_COMPILE)
def sample_worker(part, first_step, last_step, run, uniforms, model, energy, meeting, workspace):
    """Worker ``part``: block Gibbs sweeps ``[first_step, last_step)`` of
    :func:`gibbsdream.sampling.rbm_gibbs.gibbs_energy_model` on its hidden units, with ``run``
    (:class:`SampleRun`), ``uniforms`` (:class:`Uniforms`: sweep ``s`` uses row ``s % U`` once the
    calling thread has drawn it; rows of sweeps at temperature 0 are not used), the shared
    ``model`` (:class:`Parameters`, read only), ``energy`` (:class:`Energy`), ``meeting`` and its
    own ``workspace`` (:class:`SampleWorkspace`); :func:`check_sample_arguments` states the
    shapes. The worker that ends at the last sweep also records the final free energies.

    Who writes what, and when the others read it: its free-energy share ``energy.shares[thread]``
    and logit share before the first meeting of a sweep, read by every worker between the first
    and the second; its chains ``[thread*C//T, (thread+1)*C//T)`` of ``run.states`` and their
    entries of ``energy.trace`` between the first and the second meeting, the chains read by
    every worker after the second.
    """
    previous_blas_threads = _one_blas_thread()
    _sample_sweeps(part, first_step, last_step, run, uniforms, model, energy, meeting, workspace)
    SET_BLAS_THREADS(previous_blas_threads)  # also after a call-off: the calling thread goes on in PyTorch


@njit(inline="always", **_COMPILE)  # inlined, as _train_updates
def _sample_sweeps(part, first_step, last_step, run, uniforms, model, energy, meeting, workspace):
    """The loop of :func:`sample_worker`; returns early when the run is called off."""
    thread, num_threads, first, last = part.thread, part.num_threads, part.first, part.last
    states, known, clamped, num_categories = run.states, run.known, run.clamped, run.num_categories
    temperatures, visible_temperatures = run.temperatures, run.visible_temperatures
    hidden_uniforms, visible_uniforms = uniforms.hidden, uniforms.visible
    weight_t, visible_bias, hidden_bias = model.weight_t, model.visible_bias, model.hidden_bias
    counters, partials, energy_partials = meeting.counters, meeting.logit_shares, energy.shares
    own_weight_t, own_hidden_bias = workspace.own_weight_t, workspace.own_hidden_bias
    pre, work, exponents, samples = workspace.pre, workspace.work, workspace.exponents, workspace.samples
    logits, cdf, gemm = workspace.logits, workspace.cdf, workspace.gemm

    per_chunk, num_chains = hidden_uniforms.shape[0], states.shape[0]
    total_steps, width, rows = temperatures.shape[0], last - first, weight_t.shape[0]
    my_first_chain, my_last_chain = thread * num_chains // num_threads, (thread + 1) * num_chains // num_threads
    _copy_columns(weight_t, first, last, own_weight_t, False)
    own_hidden_bias[:] = hidden_bias[first:last]
    clamping = known.shape[0] > 0
    meeting_count = 2 * first_step
    for step in range(first_step, last_step):
        if not _wait_for_numbers(counters, num_threads, step):
            return
        u = step % per_chunk
        _free_energy_partials(
            states, num_categories, own_weight_t, own_hidden_bias, pre, work, exponents, energy_partials[thread]
        )
        temperature = temperatures[step]
        for c in range(num_chains):
            chain, sample = pre[c * width : (c + 1) * width], samples[c]
            if temperature == 0:
                for j in range(width):
                    sample[j] = 1 if chain[j] > 0 else 0
            else:
                for j in range(width):
                    chain[j] = chain[j] / temperature
        if temperature != 0:
            sigmoid(pre, num_chains * width, exponents)
            _bernoulli(hidden_uniforms[u], pre, first, last, samples)
        _visible_product(samples, own_weight_t, partials[thread], gemm)
        meeting_count += 1
        if not _wait_for_all(counters, thread, num_threads, meeting_count):
            return
        visible_temperature = visible_temperatures[step]
        for c in range(my_first_chain, my_last_chain):
            energy.trace[step, c] = _free_energy(states, c, num_categories, visible_bias, energy_partials)
            _summed_logits(c, visible_bias, partials, logits)
            chain = states[c]
            if visible_temperature == 0:  # the argmax of the untempered logits, the first on ties
                for i in range(rows // num_categories):
                    base, best = i * num_categories, 0
                    for k in range(1, num_categories):
                        if logits[base + k] > logits[base + best]:
                            best = k
                    chain[i] = best
            else:
                _draw_softmax(
                    logits, 1 / visible_temperature, visible_uniforms[u, c], num_categories, exponents, cdf, chain
                )
            if clamping:
                for i in range(chain.shape[0]):
                    if known[c, i]:
                        chain[i] = clamped[c, i]
        meeting_count += 1
        if not _wait_for_all(counters, thread, num_threads, meeting_count):
            return
    if last_step == total_steps:
        _free_energy_partials(
            states, num_categories, own_weight_t, own_hidden_bias, pre, work, exponents, energy_partials[thread]
        )
        if not _wait_for_all(counters, thread, num_threads, 2 * total_steps + 1):
            return
        for c in range(my_first_chain, my_last_chain):
            energy.trace[total_steps, c] = _free_energy(states, c, num_categories, visible_bias, energy_partials)


# ---- the checks: run once per call, in Python, because the loops check no bounds -------------


def _require(name: str, array, dtype, shape: tuple) -> None:
    """Raise ValueError unless ``array`` is a writeable C-contiguous NumPy array of ``dtype`` and
    ``shape`` (``None``: any length). A read-only or strided array would not be misread, but
    numba would compile the loops again for its type (20 s)."""
    if not isinstance(array, np.ndarray):
        raise ValueError(f"{name} must be a NumPy array, got {type(array).__name__}")
    fits = len(array.shape) == len(shape) and all(e is None or a == e for a, e in zip(array.shape, shape))
    if array.dtype != np.dtype(dtype) or not fits or not array.flags.c_contiguous or not array.flags.writeable:
        wanted = "(" + ", ".join("any" if e is None else str(e) for e in shape) + ("," if len(shape) == 1 else "") + ")"
        raise ValueError(
            f"{name} must be a writeable C-contiguous {np.dtype(dtype)} array of shape {wanted}; got {array.dtype} "
            f"{array.shape}, C-contiguous {array.flags.c_contiguous}, writeable {array.flags.writeable}"
        )


def _require_count(name: str, value, least: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
        raise ValueError(f"{name} must be a whole number >= {least}, got {value!r}")


def _require_categories(name: str, states: np.ndarray, num_categories: int) -> None:
    """The loops index weight rows by category: one outside [0, K) would read and write outside them."""
    if states.size and not (states.min() >= 0 and states.max() < num_categories):
        raise ValueError(f"{name} holds categories outside [0, {num_categories})")


def _check_parameters(name: str, parameters, rows: int, num_hidden: int, dtype) -> None:
    if not isinstance(parameters, Parameters):
        raise ValueError(f"{name} must be a Parameters bundle, got {type(parameters).__name__}")
    _require(f"{name}.weight_t", parameters.weight_t, dtype, (rows, num_hidden))
    _require(f"{name}.visible_bias", parameters.visible_bias, dtype, (rows,))
    _require(f"{name}.hidden_bias", parameters.hidden_bias, dtype, (num_hidden,))


def _check_common(part, model, num_visible, num_categories, meeting, num_chains, gemm):
    """Checks shared by both workers; returns ``(R, H, w, F)``."""
    _require_count("num_categories", num_categories)
    dtype = getattr(model.weight_t, "dtype", None)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"the parameters must be float32 or float64, got {dtype}")
    rows, num_hidden = num_visible * num_categories, model.weight_t.shape[-1]
    _check_parameters("model", model, rows, num_hidden, dtype)
    if not 0 <= part.first < part.last <= num_hidden or not 0 <= part.thread < part.num_threads:
        raise ValueError(f"{part} does not fit {num_hidden} hidden units")
    threads = part.num_threads
    _require("meeting.counters", meeting.counters, np.int64, (threads + 2, None))
    if meeting.counters.shape[1] * 8 < counter_span():
        raise ValueError(f"meeting counters {meeting.counters.shape[1] * 8} bytes apart share cache lines")
    _require("meeting.logit_shares", meeting.logit_shares, dtype, (threads, num_chains, rows))
    _require("gemm.ints", gemm.ints, np.int32, (6,))
    _require("gemm.scalars", gemm.scalars, dtype, (2,))
    _require("gemm.chars", gemm.chars, np.uint8, (2,))
    return rows, num_hidden, part.last - part.first, dtype


def check_train_arguments(part, first_update, last_update, run, uniforms, model, velocity, meeting, workspace):
    """Raise ValueError for arguments of :func:`train_worker` that it would misread."""
    _require("run.data", run.data, np.int64, (None, None))
    num_visible, num_categories, n = run.data.shape[1], run.num_categories, run.batch_size
    _require_count("run.batch_size", n)
    _require("run.chains", run.chains, np.int64, (None, num_visible))
    num_chains = run.chains.shape[0]
    if not run.persistent and num_chains != n:
        raise ValueError(f"without persistent chains the chains are the batch: {num_chains} chains, batch {n}")
    ws = workspace
    rows, num_hidden, width, dtype = _check_common(
        part, model, num_visible, num_categories, meeting, num_chains, ws.gemm
    )
    if not isinstance(run.persistent, bool):
        raise ValueError(f"run.persistent must be True or False, got {run.persistent!r}")
    _require("run.coefficients", run.coefficients, dtype, (5,))
    if not 0 <= first_update <= last_update or last_update * n > run.data.shape[0]:
        raise ValueError(f"updates [{first_update}, {last_update}) of batch {n} do not fit {run.data.shape[0]} rows")
    _require("uniforms.hidden", uniforms.hidden, dtype, (None, None, num_chains, num_hidden))
    per_chunk, steps = uniforms.hidden.shape[:2]
    _require("uniforms.visible", uniforms.visible, np.float64, (per_chunk, steps, num_chains, num_visible))
    _check_parameters("velocity", velocity, rows, num_hidden, dtype)
    _require("workspace.own_weight_t", ws.own_weight_t, dtype, (rows, width))
    _require("workspace.own_hidden_bias", ws.own_hidden_bias, dtype, (width,))
    _require("workspace.own_velocity_t", ws.own_velocity_t, dtype, (rows, width))
    _require("workspace.own_velocity_hidden", ws.own_velocity_hidden, dtype, (width,))
    _require("workspace.probs", ws.probs, dtype, ((n + num_chains) * width,))
    _require("workspace.model_hidden", ws.model_hidden, dtype, (num_chains * width,))
    _require("workspace.samples", ws.samples, dtype, (num_chains, width))
    _require("workspace.exponents", ws.exponents, np.int32, (max((n + num_chains) * width, rows),))
    _require("workspace.logits", ws.logits, dtype, (rows,))
    _require("workspace.cdf", ws.cdf, np.float64, (4, num_categories))
    if part.thread == 0:  # the shared arrays' values, once (every worker checked their shapes)
        _require_categories("run.data", run.data[first_update * n : last_update * n], num_categories)
        if run.persistent:
            _require_categories("run.chains", run.chains, num_categories)


def check_sample_arguments(part, first_step, last_step, run, uniforms, model, energy, meeting, workspace):
    """Raise ValueError for arguments of :func:`sample_worker` that it would misread."""
    _require("run.states", run.states, np.int64, (None, None))
    num_chains, num_visible = run.states.shape
    ws = workspace
    rows, num_hidden, width, dtype = _check_common(
        part, model, num_visible, run.num_categories, meeting, num_chains, ws.gemm
    )
    clamp = (num_chains, num_visible) if run.known.size or run.clamped.size else (0, 0)
    _require("run.known", run.known, np.uint8, clamp)
    _require("run.clamped", run.clamped, np.int64, clamp)
    _require("run.temperatures", run.temperatures, np.float64, (None,))
    steps = run.temperatures.shape[0]
    _require("run.visible_temperatures", run.visible_temperatures, np.float64, (steps,))
    if not 0 <= first_step <= last_step <= steps:
        raise ValueError(f"sweeps [{first_step}, {last_step}) do not fit {steps} temperatures")
    _require("uniforms.hidden", uniforms.hidden, dtype, (None, num_chains, num_hidden))
    _require("uniforms.visible", uniforms.visible, np.float64, (uniforms.hidden.shape[0], num_chains, num_visible))
    _require("energy.trace", energy.trace, dtype, (steps + 1, num_chains))
    _require("energy.shares", energy.shares, np.float64, (part.num_threads, num_chains))
    _require("workspace.own_weight_t", ws.own_weight_t, dtype, (rows, width))
    _require("workspace.own_hidden_bias", ws.own_hidden_bias, dtype, (width,))
    _require("workspace.pre", ws.pre, dtype, (num_chains * width,))
    _require("workspace.work", ws.work, dtype, (num_chains * width,))
    _require("workspace.exponents", ws.exponents, np.int32, (max(num_chains * width, rows),))
    _require("workspace.samples", ws.samples, dtype, (num_chains, width))
    _require("workspace.logits", ws.logits, dtype, (rows,))
    _require("workspace.cdf", ws.cdf, np.float64, (4, run.num_categories))
    if part.thread == 0:
        _require_categories("run.states", run.states, run.num_categories)
        _require_categories("run.clamped", run.clamped, run.num_categories)

"""Compiled CPU loops for categorical RBMs (numba), run by several threads at once: training
(:func:`train_worker`) and block Gibbs sampling (:func:`sample_worker`).

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
engines use the same numbers; the other threads wait for each chunk (``flags[ready_index]``).

Rounding: ``exp`` is a Cephes-style polynomial (within 2 ulp of the exact value, checked by the
tests) written so that LLVM vectorises it, and the logits are summed in another order than
PyTorch's ``addmm``. Given the same parameters and random numbers the two engines' draws then
differ about once in 23 million categorical draws and once in several billion hidden ones
(measured on random logits); the parameters themselves drift apart by float rounding (the step
adds the statistics in another order), so over a long run the chains of the two engines part.

The threads wait by spinning on counters (:func:`_wait_until`): each counter has one writer, and
a call to ``sched_yield``, opaque to the compiler, stands before each write and after each wait
so that no store is moved past it or load above it; x86's store order does the rest. Nothing
here checks its inputs and nothing allocates: :class:`~gibbsdream.training.RBMTrainer` prepares
every array, and a thread that fails all the same sets the call-off flag that ends every wait.

Importing this module raises ImportError when numba is missing or PyTorch's library does not
export MKL's ``sgemm_`` (PyTorch builds without MKL); the trainer then uses the PyTorch engine.
"""

from __future__ import annotations

import ctypes
import math
import os
from contextlib import contextmanager

import numpy as np
import torch
from llvmlite import binding as _llvm
from numba import njit, types


def _library_symbols() -> dict:
    """Addresses of the BLAS and libc functions the loop calls, registered with LLVM by name.

    The BLAS is the MKL that PyTorch's x86 builds link statically and export, with its LP64
    Fortran interface (32-bit integers, every argument by address)."""
    folder = os.path.join(os.path.dirname(torch.__file__), "lib")
    paths = [os.path.join(folder, name) for name in ("libtorch_cpu.so", "libtorch_cpu.dylib", "torch_cpu.dll")]
    path = next((p for p in paths if os.path.exists(p)), None)
    if path is None:
        raise ImportError("PyTorch's CPU library was not found")
    try:
        torch_cpu, libc = ctypes.CDLL(path), ctypes.CDLL(None)  # CDLL(None): the C library (POSIX only)
    except (OSError, TypeError) as error:
        raise ImportError(f"the libraries the numba engine calls cannot be loaded here ({error})") from None
    wanted = {
        "sgemm": (torch_cpu, "sgemm_"),
        "dgemm": (torch_cpu, "dgemm_"),
        "set_blas_threads": (torch_cpu, "MKL_Set_Num_Threads_Local"),
        "yield": (libc, "sched_yield"),
    }
    addresses = {}
    for key, (library, name) in wanted.items():
        try:
            addresses[key] = ctypes.cast(getattr(library, name), ctypes.c_void_p).value
        except AttributeError:
            raise ImportError(
                f"{name} is not exported here (the numba engine needs a PyTorch built with MKL)"
            ) from None
    for key, address in addresses.items():
        _llvm.add_symbol(f"gibbsdream_{key}", address)
    return addresses


_library_symbols()
_pointer = types.intp  # addresses are passed as integers (the x86-64 calling convention treats them alike)
_sgemm = types.ExternalFunction("gibbsdream_sgemm", types.void(*[_pointer] * 13))
_dgemm = types.ExternalFunction("gibbsdream_dgemm", types.void(*[_pointer] * 13))
_set_blas_threads = types.ExternalFunction("gibbsdream_set_blas_threads", types.int32(types.int32))
_yield = types.ExternalFunction("gibbsdream_yield", types.int32())

_COMPILE = {"cache": True, "nogil": True, "boundscheck": False, "error_model": "numpy"}

_sched_getcpu = getattr(ctypes.CDLL(None), "sched_getcpu", None)  # glibc and musl have it


def current_cpu() -> int:
    """The CPU the calling thread runs on now, or -1 where the C library cannot tell."""
    return _sched_getcpu() if _sched_getcpu is not None else -1


@contextmanager
def kept_apart(thread: int, main_cpu: int):
    """Keep worker threads off each other's CPU while they run: worker 0 (the calling thread) on
    ``main_cpu``, where it already is, the others anywhere else the process may run.

    Without it Linux woke the pool thread on the caller's CPU in one call out of two here and
    left it there, so two workers took turns on one core (measured: 510 µs an update instead of
    278). Nothing else is pinned, so the scheduler still places the helpers, and several
    processes on a large machine do not pile onto the same cores.
    """
    allowed = os.sched_getaffinity(0) if hasattr(os, "sched_setaffinity") else set()
    if main_cpu < 0 or len(allowed) < 2 or main_cpu not in allowed:
        yield
        return
    os.sched_setaffinity(0, {main_cpu} if thread == 0 else allowed - {main_cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, allowed)


FLAG_STRIDE = 16  # int64s between two threads' counters: one 128-byte span each, no false sharing


def flags_for(num_threads: int) -> np.ndarray:
    """Counters shared by the workers of one run, each on its own 128 bytes: every worker's
    meeting count, then the number of updates whose random numbers are ready
    (:func:`ready_index`); last the call-off flag."""
    return np.zeros((num_threads + 1) * FLAG_STRIDE + 1, np.int64)


def ready_index(num_threads: int) -> int:
    return num_threads * FLAG_STRIDE


GEMM_INTS = 6  # per-thread scratch: m, n, k, lda, ldb, ldc for the Fortran BLAS call


def column_block(thread: int, num_threads: int, num_hidden: int) -> tuple[int, int]:
    """The hidden units ``[first, last)`` that worker ``thread`` of ``num_threads`` owns."""
    return thread * num_hidden // num_threads, (thread + 1) * num_hidden // num_threads


def blas_scratch(dtype) -> tuple:
    """A worker's arguments for the Fortran BLAS call: integers, scalars (``dtype``), and characters."""
    return np.empty(GEMM_INTS, np.int32), np.empty(2, dtype), np.empty(2, np.uint8)


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


@njit(**_COMPILE)
def _wait_until(flags, index, count):  # pragma: no cover - compiled
    """Wait until ``flags[index] >= count``; False when the run was called off instead
    (``flags[-1]`` set, by a thread that failed)."""
    while flags[index] < count:
        if flags[flags.shape[0] - 1]:
            return False
        _yield()  # an opaque call: the counter is read afresh each time, and others may run
    _yield()  # no load after the wait is moved above it
    return True


@njit(**_COMPILE)
def _wait_for_all(flags, thread, num_threads, count):  # pragma: no cover - compiled
    """Mark this thread's arrival at meeting number ``count`` and wait for the others; False when
    the run was called off instead."""
    _yield()  # an opaque call: every store before it is done before the counter is written
    flags[thread * FLAG_STRIDE] = count
    for other in range(num_threads):  # noqa: SIM110 (numba compiles no generator expressions)
        if not _wait_until(flags, other * FLAG_STRIDE, count):
            return False
    return True


@njit(**_COMPILE)
def _visible_product(samples, weight_t, out, gemm_ints, gemm_scalars, gemm_chars):  # pragma: no cover - compiled
    """``out (C, V*K) = samples (C, w) @ weight_t.T`` by the Fortran BLAS (``weight_t (V*K, w)``).

    Row-major ``out`` is the column-major ``(V*K, C)`` product ``weight_t @ samples.T``;
    ``weight_t``'s rows read column-major are ``weight_t.T`` with leading dimension w, hence 'T', 'N'.
    """
    rows, chains, width = weight_t.shape[0], samples.shape[0], weight_t.shape[1]
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
        _sgemm(*args)
    else:
        _dgemm(*args)


@njit(**_COMPILE)
def _add_statistics(
    states, hidden, scale, num_categories, weight_t, visible_bias, hidden_bias, with_visible
):  # pragma: no cover - compiled
    """``scale * hidden[b]`` into the weight row of every (string ``b``, position) of the batch
    (``weight_t (V*K, w)``) and into the hidden biases; ``scale`` into the rows' visible biases
    when ``with_visible`` (one thread does those). ``hidden`` is flat ``(n * w,)``."""
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
    model_states,
    model_hidden,
    data_states,
    data_hidden,
    coefficients,
    num_categories,
    with_visible,
    weight_t,
    visible_bias,
    hidden_bias,
    velocity_t,
    velocity_visible,
    velocity_hidden,
):  # pragma: no cover
    """SGD with momentum on a thread's block of hidden units (torch.optim.SGD's rule, see
    :func:`train_worker`); the visible biases too when ``with_visible``."""
    learning_rate, momentum, weight_cost, model_scale, data_scale = coefficients
    if momentum == 0 and weight_cost == 0:  # straight into the rows the batch uses
        _add_statistics(
            model_states,
            model_hidden,
            -learning_rate * model_scale,
            num_categories,
            weight_t,
            visible_bias,
            hidden_bias,
            with_visible,
        )
        _add_statistics(
            data_states,
            data_hidden,
            -learning_rate * data_scale,
            num_categories,
            weight_t,
            visible_bias,
            hidden_bias,
            with_visible,
        )
        return
    width = weight_t.shape[1]
    for r in range(weight_t.shape[0]):
        weights, velocity = weight_t[r], velocity_t[r]
        for j in range(width):
            velocity[j] = momentum * velocity[j] + weight_cost * weights[j]
    for j in range(width):
        velocity_hidden[j] *= momentum
    if with_visible:
        for r in range(velocity_visible.shape[0]):
            velocity_visible[r] *= momentum
    _add_statistics(
        model_states,
        model_hidden,
        model_scale,
        num_categories,
        velocity_t,
        velocity_visible,
        velocity_hidden,
        with_visible,
    )
    _add_statistics(
        data_states,
        data_hidden,
        data_scale,
        num_categories,
        velocity_t,
        velocity_visible,
        velocity_hidden,
        with_visible,
    )
    for r in range(weight_t.shape[0]):
        weights, velocity = weight_t[r], velocity_t[r]
        for j in range(width):
            weights[j] -= learning_rate * velocity[j]
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
def train_worker(
    thread,
    num_threads,
    first,
    last,
    first_update,
    last_update,
    data,
    batch_size,
    persistent,
    num_categories,
    hidden_uniforms,
    visible_uniforms,
    chains,
    coefficients,
    weight_t,
    visible_bias,
    hidden_bias,
    velocity_t,
    velocity_visible,
    velocity_hidden,
    partials,
    flags,
    own_weight_t,
    own_velocity_t,
    own_hidden_bias,
    own_velocity_hidden,
    probs,
    model_hidden,
    samples,
    exponents,
    logits,
    cdf,
    gemm_ints,
    gemm_scalars,
    gemm_chars,
):  # pragma: no cover - compiled
    """Thread ``thread`` of ``num_threads``: updates ``[first_update, last_update)`` of CD-k / PCD-k
    on hidden units ``[first, last)``.

    Shapes (``U`` updates a chunk, ``S`` Gibbs steps, ``C`` chains, ``n`` =
    ``batch_size`` strings a batch, ``w = last - first``, ``R = V*K``), all arrays in the
    parameters' dtype unless said:

    * shared by all threads: ``data (N*n, V)`` int64, batch ``g`` is rows ``[g*n, (g+1)*n)``;
      ``hidden_uniforms (U, S, C, H)`` and ``visible_uniforms (U, S, C, V)`` float64, one chunk of
      updates: update ``g`` uses ``[g % U]`` once ``flags[ready_index] > g``; ``chains (C, V)``
      int64, the persistent chains (updated in place) or, for CD (``persistent`` False, ``C = n``),
      scratch; ``coefficients (5,)`` = [learning rate, momentum, weight cost, 1/C, -1/n];
      ``weight_t (R, H)``, ``visible_bias (R,)``, ``hidden_bias (H,)`` and their three velocities;
      ``partials (T, C, R)``; ``flags`` from :func:`flags_for`.
    * this thread's own: ``own_weight_t``, ``own_velocity_t (R, w)``, ``own_hidden_bias``,
      ``own_velocity_hidden (w,)``, which hold its columns while it runs; ``probs ((n + C) * w,)``,
      ``model_hidden (C * w,)``, ``samples (C, w)``, ``exponents`` int32 of at least
      ``max((n + C) * w, R)``, ``logits (R,)``, ``cdf (4, K)`` float64, ``gemm_ints (6,)`` int32,
      ``gemm_scalars (2,)``, ``gemm_chars (2,)`` uint8.

    A thread works on a private copy of its columns, written back at the end: threads that
    wrote disjoint columns of the one shared array ran at half speed (measured: 353 µs an update
    against 124 with private copies, gathers and steps alone), the hardware prefetchers reading
    past the end of one thread's part of each row into the next thread's.

    The step is torch.optim.SGD's: ``velocity = momentum * velocity + gradient + weight_cost *
    weight`` (weights only), ``parameter -= learning_rate * velocity``; the gradient in the row of
    (position i, category k) is the mean hidden probabilities of the chains with ``v_i = k`` minus
    those of the data. Chains ``[thread*C//T, (thread+1)*C//T)`` are drawn by this thread.
    """
    previous_blas_threads = _set_blas_threads(1)
    per_chunk, num_steps, num_chains = hidden_uniforms.shape[0], hidden_uniforms.shape[1], hidden_uniforms.shape[2]
    width = last - first
    my_first_chain, my_last_chain = thread * num_chains // num_threads, (thread + 1) * num_chains // num_threads
    _copy_columns(weight_t, first, last, own_weight_t, False)
    _copy_columns(velocity_t, first, last, own_velocity_t, False)
    own_hidden_bias[:] = hidden_bias[first:last]
    own_velocity_hidden[:] = velocity_hidden[first:last]
    meeting = 2 * num_steps * first_update  # two meetings per Gibbs step, counted from the first update
    for g in range(first_update, last_update):
        if not _wait_until(flags, num_threads * FLAG_STRIDE, g + 1):
            return
        u = g % per_chunk
        batch = data[g * batch_size : (g + 1) * batch_size]
        hidden_preactivations(batch, num_categories, own_weight_t, own_hidden_bias, probs)
        chain_probs = probs[: batch_size * width]  # CD starts its chains at the data
        if persistent:
            chain_probs = probs[batch_size * width : (batch_size + num_chains) * width]
            hidden_preactivations(chains, num_categories, own_weight_t, own_hidden_bias, chain_probs)
        sigmoid(probs, (batch_size + (num_chains if persistent else 0)) * width, exponents)
        for s in range(num_steps):
            _bernoulli(hidden_uniforms[u, s], chain_probs, first, last, samples)
            _visible_product(samples, own_weight_t, partials[thread], gemm_ints, gemm_scalars, gemm_chars)
            meeting += 1
            if not _wait_for_all(flags, thread, num_threads, meeting):
                return
            for c in range(my_first_chain, my_last_chain):
                _summed_logits(c, visible_bias, partials, logits)
                _draw_softmax(logits, 1.0, visible_uniforms[u, s, c], num_categories, exponents, cdf, chains[c])
            meeting += 1
            if not _wait_for_all(flags, thread, num_threads, meeting):
                return
            hidden_preactivations(chains, num_categories, own_weight_t, own_hidden_bias, model_hidden)
            sigmoid(model_hidden, num_chains * width, exponents)
            chain_probs = model_hidden
        _sgd_step(
            chains,
            model_hidden,
            batch,
            probs,
            coefficients,
            num_categories,
            thread == 0,
            own_weight_t,
            visible_bias,
            own_hidden_bias,
            own_velocity_t,
            velocity_visible,
            own_velocity_hidden,
        )
    _copy_columns(weight_t, first, last, own_weight_t, True)
    _copy_columns(velocity_t, first, last, own_velocity_t, True)
    hidden_bias[first:last] = own_hidden_bias
    velocity_hidden[first:last] = own_velocity_hidden
    _set_blas_threads(previous_blas_threads)


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
def sample_worker(
    thread,
    num_threads,
    first,
    last,
    first_step,
    last_step,
    states,
    known,
    clamped,
    temperatures,
    visible_temperatures,
    num_categories,
    hidden_uniforms,
    visible_uniforms,
    weight_t,
    visible_bias,
    hidden_bias,
    energy,
    partials,
    energy_partials,
    flags,
    own_weight_t,
    own_hidden_bias,
    pre,
    work,
    exponents,
    samples,
    logits,
    cdf,
    gemm_ints,
    gemm_scalars,
    gemm_chars,
):  # pragma: no cover - compiled
    """Thread ``thread`` of ``num_threads``: block Gibbs sweeps ``[first_step, last_step)`` of
    :func:`gibbsdream.sampling.rbm_gibbs.gibbs_energy_model`, on hidden units ``[first, last)``;
    the one that ends at the last sweep also records the final free energies.

    Shapes (``S`` sweeps, ``U`` sweeps a chunk, ``C`` chains, ``w = last - first``, ``R = V*K``):
    shared: ``states (C, V)`` int64, updated in place; ``known (C, V)`` uint8 and ``clamped (C, V)``
    int64, the clamped positions and their values (``known`` of shape (0, 0): none);
    ``temperatures``, ``visible_temperatures (S,)`` float64 (0 = argmax); ``hidden_uniforms
    (U, C, H)`` and ``visible_uniforms (U, C, V)`` float64, sweep ``s`` uses ``[s % U]`` once
    ``flags[ready_index] > s`` (rows of sweeps at temperature 0 are not used); the parameters;
    ``energy (S + 1, C)``, the free energy of every chain before each sweep and at the end;
    ``partials (T, C, R)``, ``energy_partials (T, C)`` float64, ``flags`` from :func:`flags_for`.
    Own: ``own_weight_t (R, w)``, ``own_hidden_bias (w,)``, ``pre``, ``work (C * w,)``,
    ``exponents`` int32 of at least ``max(C * w, R)``, ``samples (C, w)``, ``logits (R,)``,
    ``cdf (4, K)`` float64, and the BLAS scratch of :func:`train_worker`.
    """
    previous_blas_threads = _set_blas_threads(1)
    per_chunk, num_chains = hidden_uniforms.shape[0], states.shape[0]
    total_steps, width, rows = temperatures.shape[0], last - first, weight_t.shape[0]
    my_first_chain, my_last_chain = thread * num_chains // num_threads, (thread + 1) * num_chains // num_threads
    _copy_columns(weight_t, first, last, own_weight_t, False)
    own_hidden_bias[:] = hidden_bias[first:last]
    clamping = known.shape[0] > 0
    meeting = 2 * first_step
    for step in range(first_step, last_step):
        if not _wait_until(flags, num_threads * FLAG_STRIDE, step + 1):
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
        _visible_product(samples, own_weight_t, partials[thread], gemm_ints, gemm_scalars, gemm_chars)
        meeting += 1
        if not _wait_for_all(flags, thread, num_threads, meeting):
            return
        visible_temperature = visible_temperatures[step]
        for c in range(my_first_chain, my_last_chain):
            energy[step, c] = _free_energy(states, c, num_categories, visible_bias, energy_partials)
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
        meeting += 1
        if not _wait_for_all(flags, thread, num_threads, meeting):
            return
    if last_step == total_steps:
        _free_energy_partials(
            states, num_categories, own_weight_t, own_hidden_bias, pre, work, exponents, energy_partials[thread]
        )
        if not _wait_for_all(flags, thread, num_threads, 2 * total_steps + 1):
            return
        for c in range(my_first_chain, my_last_chain):
            energy[total_steps, c] = _free_energy(states, c, num_categories, visible_bias, energy_partials)
    _set_blas_threads(previous_blas_threads)


def run_workers(
    worker, threads: int, columns, total: int, per_chunk: int, feed, arguments, flags, pool, advance=None
) -> None:
    """Run ``worker(t, threads, first, last, start, stop, *arguments(t))`` on ``threads`` threads
    over ``total`` steps (updates or sweeps): the calling thread is worker 0 and goes a chunk of
    ``per_chunk`` steps at a time, each after ``feed(start, stop)`` has drawn its random numbers;
    the others, from ``pool``, run all the steps in one call and spin between chunks rather than
    sleep, so that no chunk waits for a thread to be woken (on the development VM that could cost
    milliseconds: a parallel ``zeros_like`` of 143,000 floats took 7.8 ms after a pause and 0.1 ms
    right after other work). ``columns(t)`` gives worker t's hidden units; ``advance(n)`` reports
    progress; ``flags`` from :func:`flags_for`. A worker that fails calls the run off (the last
    flag) and its exception is raised here.
    """
    main_cpu = current_cpu() if threads > 1 else -1
    failures = []

    def work(thread, start, stop):
        try:
            with kept_apart(thread, main_cpu):
                worker(thread, threads, *columns(thread), start, stop, *arguments(thread))
        except BaseException as error:  # raised again in the calling thread below
            flags[-1] = 1  # call the run off, so that no other thread waits for this one forever
            failures.append(error)

    helpers = [pool.submit(work, t, 0, total) for t in range(1, threads)]
    try:
        for start in range(0, total, per_chunk):
            stop = min(start + per_chunk, total)
            feed(start, stop)  # the helpers are past the previous chunk's draws
            flags[ready_index(threads)] = stop
            work(0, start, stop)
            if failures:
                break
            if advance is not None:
                advance(stop - start)
    except BaseException:
        flags[-1] = 1
        raise
    finally:
        for helper in helpers:
            helper.result()
    if failures:
        raise failures[0]

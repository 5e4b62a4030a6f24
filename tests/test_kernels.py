"""The compiled loops' package: the checks of their argument bundles, the machine they assume,
and the thread contract (parts, counters, the BLAS setting of the calling thread).

The loops check no bounds, so every bundle is checked in Python before they start; each check
here is shown to pass on what the trainer and the sampler really build and to fail on one
deliberately broken field.
"""

import ctypes
import platform

import numpy as np
import pytest
import torch

from gibbsdream import RBM, sample
from gibbsdream.kernels import threads
from gibbsdream.training import RBMTrainConfig, RBMTrainer

rbm = pytest.importorskip("gibbsdream.kernels.rbm")
native = pytest.importorskip("gibbsdream.kernels.native")


def trainer(threads_=2, **settings):
    data = torch.randint(0, 5, (200, 6), generator=torch.Generator().manual_seed(0))
    model = RBM(6, 10, 5)
    config = RBMTrainConfig(num_hidden=10, engine="numba", monitor_every=0, **settings)
    result = RBMTrainer(model, config, data, data[:0])
    result.threads = threads_
    return result


def captured_run(monkeypatch, module, go):
    """The arguments that ``go()`` hands to ``run_workers`` in ``module``, after the real run."""
    calls = []
    real = module.run_workers

    def spy(worker, parts, total, per_chunk, feed, arguments, check, counters, pool, advance=None):
        calls.append((parts, total, arguments, check))
        return real(worker, parts, total, per_chunk, feed, arguments, check, counters, pool, advance)

    monkeypatch.setattr(module, "run_workers", spy)
    go()
    return calls[0]


def broken_training_arguments(run, uniforms, model, velocity, meeting, workspace):
    """One argument set per broken field, each a tuple for check_train_arguments after (part, first, last)."""
    fortran = np.asfortranarray(model.weight_t)
    read_only = run.data.copy()
    read_only.flags.writeable = False
    out_of_range = run.data.copy()
    out_of_range[3, 2] = 5  # K = 5: one row past the position's categories
    narrow = np.zeros((meeting.counters.shape[0], 8), np.int64)  # 64 bytes apart: neighbours on one pair of lines
    return {
        "model.weight_t": (run, uniforms, model._replace(weight_t=fortran), velocity, meeting, workspace),
        "run.data": (run._replace(data=read_only), uniforms, model, velocity, meeting, workspace),
        "categories outside": (run._replace(data=out_of_range), uniforms, model, velocity, meeting, workspace),
        "uniforms.visible": (
            run,
            uniforms._replace(visible=uniforms.visible.astype(np.float32)),
            model,
            velocity,
            meeting,
            workspace,
        ),
        "velocity.hidden_bias": (
            run,
            uniforms,
            model,
            velocity._replace(hidden_bias=velocity.hidden_bias[:-1].copy()),
            meeting,
            workspace,
        ),
        "share cache lines": (run, uniforms, model, velocity, meeting._replace(counters=narrow), workspace),
        "workspace.exponents": (
            run,
            uniforms,
            model,
            velocity,
            meeting,
            workspace._replace(exponents=workspace.exponents[:-1].copy()),
        ),
        "run.coefficients": (
            run._replace(coefficients=run.coefficients.astype(np.float64)),
            uniforms,
            model,
            velocity,
            meeting,
            workspace,
        ),
    }


def test_the_training_checks_pass_the_trainers_bundles_and_refuse_a_broken_field(monkeypatch):
    import gibbsdream.training.rbm as training

    t = trainer(persistent=True)
    parts, total, arguments, check = captured_run(monkeypatch, training, lambda: t.update(t.train_data[:64]))
    assert check is rbm.check_train_arguments and len(parts) == 2
    for part, bundles in zip(parts, arguments):
        check(part, 0, total, *bundles)  # what the trainer built passes
    for message, broken in broken_training_arguments(*arguments[0]).items():
        with pytest.raises(ValueError, match=message):
            check(parts[0], 0, total, *broken)
    with pytest.raises(ValueError, match="do not fit"):  # more updates than the data holds
        check(parts[0], 0, total + 1, *arguments[0])


def test_the_sampling_checks_pass_the_samplers_bundles_and_refuse_a_broken_field(monkeypatch):
    import gibbsdream.sampling.rbm_gibbs as rbm_gibbs

    model = RBM(6, 130, 5)  # 130 hidden units: two threads
    known = torch.zeros(9, 6, dtype=torch.bool)
    known[:, 0] = True

    def go():
        rbm_gibbs.gibbs_compiled(model, torch.zeros(9, 6, dtype=torch.long), 5, [1.0] * 5, known=known, threads=2)

    parts, total, arguments, check = captured_run(monkeypatch, rbm_gibbs, go)
    assert check is rbm.check_sample_arguments
    for part, bundles in zip(parts, arguments):
        check(part, 0, total, *bundles)
    run, uniforms, parameters, energy, meeting, workspace = arguments[0]
    clamped = run.clamped.copy()
    clamped[0, 0] = -1
    broken = {
        "run.clamped holds categories": run._replace(clamped=clamped),
        "run.known": run._replace(known=run.known.astype(bool)),
        "run.visible_temperatures": run._replace(visible_temperatures=run.visible_temperatures[:-1].copy()),
    }
    for message, bad_run in broken.items():
        with pytest.raises(ValueError, match=message):
            check(parts[0], 0, total, bad_run, uniforms, parameters, energy, meeting, workspace)
    with pytest.raises(ValueError, match="energy.trace"):
        bad_energy = energy._replace(trace=energy.trace[:-1].copy())
        check(parts[0], 0, total, run, uniforms, parameters, bad_energy, meeting, workspace)


def test_other_machines_are_refused_on_import(monkeypatch):
    native.check_machine()  # this one passes, or the module would not have imported
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    with pytest.raises(ImportError, match=r"x86-64's store order .* 'aarch64'"):
        native.check_machine()


def test_parts_cover_the_hidden_units_once_and_run_workers_refuses_any_others():
    for count, hidden in ((1, 10), (3, 10), (2, 130), (7, 7)):
        parts = threads.parts_for(count, hidden)
        covered = [j for part in parts for j in range(part.first, part.last)]
        assert covered == list(range(hidden)) and [p.thread for p in parts] == list(range(count))
    with pytest.raises(ValueError, match="num_threads"):
        threads.parts_for(4, 3)  # an empty block
    good = threads.parts_for(2, 10)
    twice = [good[0], good[0]._replace(num_threads=2)]  # two workers 0: two writers of one counter
    gap = [good[0], good[1]._replace(first=6)]
    for parts in (twice, gap):
        with pytest.raises(ValueError, match="part|blocks"):
            threads.run_workers(None, parts, 1, 1, None, None, None, threads.meeting_counters(2), None)
    counters = threads.meeting_counters(3)
    assert counters.shape[0] == 5 and counters.strides[0] >= 2 * threads.cache_line_bytes()


def _calling_thread_blas_threads() -> int:
    return ctypes.CFUNCTYPE(ctypes.c_int)(native.ADDRESSES["blas_threads"])()


@pytest.fixture
def two_torch_threads():
    """Two BLAS threads for the calling thread (conftest gives the tests one), so that the
    worker's setting of one is seen if it is not undone."""
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


def test_the_calling_thread_gets_its_blas_threads_back_even_after_a_call_off(two_torch_threads):
    before = _calling_thread_blas_threads()
    if before < 2:
        pytest.skip("MKL runs on one thread here: nothing to restore")
    t = trainer(persistent=True)
    t.update(t.train_data[:64])
    assert _calling_thread_blas_threads() == before
    original = t._scratch

    def broken(thread, *args):  # worker 1 fails its check while worker 0 waits for it in the loop
        workspace = original(thread, *args)
        return workspace._replace(samples=workspace.samples[:1].copy()) if thread == 1 else workspace

    t._scratch = broken
    with pytest.raises(ValueError, match="workspace.samples"):
        t.update(t.train_data[:64])
    assert _calling_thread_blas_threads() == before


def test_the_samplers_draws_do_not_depend_on_its_chunking(monkeypatch):
    """The calling thread refills the one chunk of random numbers while the helpers wait (the
    ready counter): chunks of 1, 3 and 8 sweeps must give the same chains."""
    import gibbsdream.sampling.rbm_gibbs as rbm_gibbs

    model = RBM(5, 140, 4)
    model.reset_parameters(torch.Generator().manual_seed(1), std=0.5)
    results = []
    for per_chunk in (1, 3, 8):
        monkeypatch.setattr(rbm_gibbs, "SWEEPS_PER_CHUNK", per_chunk)
        results.append(sample(model, num_chains=20, steps=9, seed=4, engine="numba").samples)
    assert all(torch.equal(results[0], r) for r in results[1:])


def _run_with_slow_chunks(monkeypatch, hour_long_sleeps=True, lose_python_wakes=False, timeout=60):
    """Sample with 3 workers on this machine's cores (2 in CI: they must wait for each other) and a
    calling thread that pauses 20 ms before each chunk of random numbers, so that the helpers
    spin out and sleep on the counters. Returns (finished, samples, counters)."""
    import threading
    import time

    import gibbsdream.sampling.rbm_gibbs as rbm_gibbs

    if hour_long_sleeps:  # a wake that is lost then hangs the run instead of costing a millisecond
        monkeypatch.setattr(threads, "SLEEP_NS", 3600 * 10**9)
    if lose_python_wakes:
        monkeypatch.setattr(threads, "wake", lambda counters, row: None)
    monkeypatch.setattr(rbm_gibbs, "SWEEPS_PER_CHUNK", 2)
    seen = {}
    real = rbm_gibbs.run_workers

    def slow_feed_spy(worker, parts, total, per_chunk, feed, arguments, check, counters, pool, advance=None):
        seen["counters"] = counters

        def slow_feed(start, stop):
            time.sleep(0.02)
            feed(start, stop)

        return real(worker, parts, total, per_chunk, slow_feed, arguments, check, counters, pool, advance)

    monkeypatch.setattr(rbm_gibbs, "run_workers", slow_feed_spy)
    model = RBM(5, 192, 4)
    model.reset_parameters(torch.Generator().manual_seed(1), std=0.5)
    compiled = rbm_gibbs.gibbs_compiled
    monkeypatch.setattr(
        "gibbsdream.sampling.api.gibbs_compiled", lambda *args, **kwargs: compiled(*args, **kwargs, threads=3)
    )
    out = {}
    runner = threading.Thread(
        target=lambda: out.update(s=sample(model, num_chains=20, steps=12, seed=4, engine="numba").samples),
        daemon=True,
    )
    runner.start()
    runner.join(timeout)
    return not runner.is_alive(), out.get("s"), seen.get("counters"), runner


def test_sleeping_workers_are_woken_by_every_move_of_a_counter(monkeypatch):
    """Workers that wait long sleep on a futex; with hour-long sleeps the run still finishes,
    with the draws of the engine's other runs, only if every counter move wakes its sleepers."""
    finished, samples, _, _ = _run_with_slow_chunks(monkeypatch)
    assert finished
    monkeypatch.undo()
    model = RBM(5, 192, 4)
    model.reset_parameters(torch.Generator().manual_seed(1), std=0.5)
    reference = sample(model, num_chains=20, steps=12, seed=4, engine="torch").samples
    assert torch.equal(samples, reference)


@pytest.mark.skipif(not threads.SLEEPS, reason="workers sleep on a futex on Linux only")
def test_the_wake_check_fails_when_the_calling_thread_does_not_wake_the_helpers(monkeypatch):
    """The deliberately wrong variant of the test above: the calling thread posts each chunk's
    numbers without a wake, and the helpers asleep on that counter never learn of it."""
    finished, _, counters, runner = _run_with_slow_chunks(monkeypatch, lose_python_wakes=True, timeout=5)
    assert not finished
    monkeypatch.undo()
    counters[-1, 2:4] = (0, 10**6)  # sleeps from now on end within a millisecond
    counters[-1, 0] = 1  # call the run off, and wake everyone, so that no thread is left behind
    for row in range(counters.shape[0] - 1):
        threads.wake(counters, row)
    runner.join(30)
    assert not runner.is_alive()

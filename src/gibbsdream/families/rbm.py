"""The RBM family: categorical restricted Boltzmann machines over fixed-length strings.

Its checkpoints hold the model, a :class:`~gibbsdream.StringCodec` and the encoded training and
validation strings (novelty checks and data-initialised chains read them).
"""

from __future__ import annotations

import time

import torch

from ..errors import UsageError
from .base import Evaluation, Family, Generated, register

DEFAULT_STEPS = 1000  # Gibbs sweeps when none are asked for


def prepare(checkpoint) -> None:
    """Refuse a checkpoint whose samples cannot be decoded; give it empty data parts if it kept none."""
    if checkpoint.codec is None:
        raise UsageError(
            f"checkpoint {checkpoint.path} has no string codec, so its samples cannot be decoded; retrain it "
            "with `gibbsdream train rbm`"
        )
    for part in ("train", "validation"):
        checkpoint.data.setdefault(part, torch.zeros(0, checkpoint.model.num_visible, dtype=torch.long))


# ---- generating ----------------------------------------------------------------------------------


def generate(
    checkpoint,
    *,
    num_samples: int = 20,
    steps: int | None = None,
    temperature="1.0",
    anneal: str = "geometric",
    init: str = "uniform",
    final: str = "sample",
    prefix: str | None = None,
    suffix: str | None = None,
    every: int | None = None,
    dedupe: bool = False,
    engine: str = "auto",
    seed: int = 0,
    progress: bool = False,
    on_step=None,
) -> Generated:
    """Run ``num_samples`` block-Gibbs chains of the checkpoint's RBM and decode them.

    Args:
        checkpoint: a loaded RBM checkpoint (:func:`gibbsdream.load`).
        num_samples: parallel chains ``N``.
        steps: Gibbs sweeps (default 1000).
        temperature, anneal: a constant or annealed temperature (``"1.5:0.2"``) and how it goes.
        init: where chains start (``uniform``, ``data``, ``silhouettes``, ...; see the sampler).
        final: ``"argmax"`` takes the most likely character at the last sweep.
        prefix, suffix: clamp the start (right-padded models) or the end (left-padded) of every string.
        every: also keep each chain's state every this many sweeps (every kept state is a sample).
        dedupe: with ``every``, drop a string already seen in the same chain.
        engine: ``"auto"``, ``"torch"`` or ``"numba"``.
        seed: same seed, same device: same samples.
        on_step: called as ``on_step(n, states, trace)`` after every sweep (a live view).

    Returns:
        :class:`Generated` with ``outputs`` the decoded strings (one per record) and ``records``
        (``chain``, ``step``, ``text``, ``energy`` (free energy, lower is likelier),
        ``in_training_data``).
    """
    from ..sampling import sample
    from ..summary import string_records, training_strings

    steps = DEFAULT_STEPS if steps is None else steps
    if dedupe and every is None:
        raise UsageError("dedupe needs every (it drops repeats among the states recorded along a chain)")
    if prefix is not None and suffix is not None:
        raise UsageError("give a prefix or a suffix, not both")
    codec = checkpoint.codec
    x = known = None
    if prefix is not None:
        x, known = codec.clamp_prefix(prefix)
    elif suffix is not None:
        x, known = codec.clamp_suffix(suffix)
    train_states = checkpoint.data["train"] if len(checkpoint.data["train"]) else None
    started = time.perf_counter()
    chain = sample(
        checkpoint.model,
        num_chains=num_samples,
        steps=steps,
        temperature=temperature,
        anneal=anneal,
        init=init,
        x=x,
        known=known,
        final=final,
        seed=seed,
        data=train_states,
        codec=codec,
        record_every=every,
        progress=progress,
        engine=engine,
        on_step=on_step,
    )
    seconds = time.perf_counter() - started
    records = string_records(chain, codec, training_strings(checkpoint), dedupe=dedupe)
    return Generated(chain=chain, outputs=[r["text"] for r in records], records=records, seconds=seconds)


# ---- scoring -------------------------------------------------------------------------------------


def evaluate(
    checkpoint,
    data,
    *,
    method: str = "auto",
    ais_runs: int = 100,
    ais_betas: int = 10000,
    skip_invalid: bool = False,
    seed: int = 0,
    progress: bool = False,
) -> Evaluation:
    """Test log-likelihood of strings: log Z exactly (small models) or by AIS, and pseudo-likelihood.

    Args:
        checkpoint: a loaded RBM checkpoint.
        data: a text file with one string per line, ``builtin:NAME``, or a list of strings.
        method: ``"auto"`` (exact when the model is small enough to enumerate), ``"exact"``, ``"ais"``.
        ais_runs, ais_betas: parallel AIS runs and intermediate distributions.
        skip_invalid: skip strings the model cannot encode instead of refusing them.
        seed: AIS randomness.

    Returns:
        :class:`Evaluation` whose values hold ``strings``, ``skipped``, ``log_z`` (± ``log_z_stderr``,
        by ``log_z_method``), ``mean_log_likelihood`` (nats per string, ± ``..._stderr`` over strings),
        ``bits_per_character``, ``mean_pseudo_log_likelihood`` and ``seconds``.
    """
    from ..data.strings import read_lines
    from ..likelihood import log_likelihood, log_partition, pseudo_log_likelihood, resolve_method

    if data is None:
        raise UsageError("evaluating a string model needs data (a text file with one string per line, or builtin:NAME)")
    lines = list(data) if isinstance(data, (list, tuple)) else read_lines(data)
    kept, report = checkpoint.codec.filter(lines)
    if report.skipped and not skip_invalid:
        reason, examples = next(iter(report.examples.items()))
        number, text = examples[0]
        raise UsageError(
            f"{report.total - report.kept} of {report.total} lines cannot be encoded by this model (line {number}, "
            f"{text!r}: {reason}); pass --skip-invalid to ignore them"
        )
    if not kept:
        raise UsageError(f"none of the {report.total} lines of {data} can be encoded by this model")
    model = checkpoint.model
    states = checkpoint.codec.encode(kept).to(model.weight.device)
    started = time.perf_counter()
    used = resolve_method(model, method)
    log_z, stderr = log_partition(model, method=used, num_runs=ais_runs, num_betas=ais_betas, seed=seed)
    ll = log_likelihood(model, states, log_z)
    pll = pseudo_log_likelihood(model, states)
    values = {
        "checkpoint": str(checkpoint.path),
        "data": data if isinstance(data, str) else f"{len(lines)} strings",
        "strings": len(kept),
        "skipped": report.total - report.kept,
        "log_z": log_z,
        "log_z_stderr": stderr,
        "log_z_method": used,
        "mean_log_likelihood": ll.mean().item(),
        "mean_log_likelihood_stderr": (ll.std() / len(ll) ** 0.5).item() if len(ll) > 1 else 0.0,
        "bits_per_character": -ll.sum().item() / sum(len(s) for s in kept) / 0.6931471805599453,
        "mean_pseudo_log_likelihood": pll.mean().item(),
        "seconds": round(time.perf_counter() - started, 3),
    }
    lines_out = [
        f"{values['strings']} strings ({values['skipped']} skipped)",
        f"log Z               {log_z:.3f} ± {stderr:.3f} ({used})",
        f"mean log-likelihood {values['mean_log_likelihood']:.3f} nats per string "
        f"(± {values['mean_log_likelihood_stderr']:.3f} over strings, ± {stderr:.3f} from log Z)",
        f"bits per character  {values['bits_per_character']:.3f}",
        f"mean pseudo-LL      {values['mean_pseudo_log_likelihood']:.3f} nats per string",
    ]
    return Evaluation(values=values, lines=lines_out)


FAMILY = register(
    Family(
        name="rbm",
        title="an RBM (string) model",
        label="string (RBM)",
        outputs="strings",
        prepare=prepare,
        generate=generate,
        evaluate=evaluate,
        generate_options=("init", "final", "prefix", "suffix", "dedupe", "engine"),
        evaluate_options=("method", "ais_runs", "ais_betas", "skip_invalid"),
        sweep_defaults={
            "temperature": "1",
            "anneal": "geometric",
            "steps": DEFAULT_STEPS,
            "init": "uniform",
            "final": "sample",
        },
    )
)

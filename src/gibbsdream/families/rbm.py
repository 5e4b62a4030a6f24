"""The RBM family: categorical restricted Boltzmann machines over fixed-length strings.

Its checkpoints hold the model, a :class:`~gibbsdream.StringCodec` and the encoded training and
validation strings (novelty checks and data-initialised chains read them).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

import torch

from ..checkpoint import load_checkpoint
from ..data.strings import CorpusReport, StringCodec, read_lines
from ..errors import ConfigError, UsageError
from ..files import atomic_write_text, same_file
from ..likelihood import log_likelihood, log_partition, pseudo_log_likelihood, resolve_method
from ..models import RBM
from ..models.rbm import RBMConfig
from ..resources import check_memory, product_text, rbm_training_bytes
from ..sampling import sample
from ..sampling.api import make_generator
from ..sampling.replica_exchange import DEFAULT_REPLICAS
from ..summary import CharNGram, string_records, training_strings, yield_measure
from ..training import RBMTrainer, resolve_device, save_trainer, split_data
from ..training.rbm import RBMTrainConfig, check_cost_in_epochs
from ..training.runs import (
    Trained,
    TrainingSummary,
    changes_on_resume,
    check_epochs,
    checkpoint_held,
    corpus_source,
    fresh_run,
    given_fields,
    summarize,
)
from .base import Evaluation, Exported, Family, Generated, check_export_target, check_split, register

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
    sampler: str = "gibbs",
    replicas: int = DEFAULT_REPLICAS,
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
        every: also keep each chain's state every this many sweeps (every kept state after the start
            is a sample; the starting state is not).
        dedupe: with ``every``, drop a string already seen in the same chain.
        engine: ``"auto"``, ``"torch"`` or ``"numba"``.
        seed: same seed, same device: same samples.
        on_step: called as ``on_step(n, states, trace)`` after every sweep (a live view).
        sampler: ``"gibbs"``, or ``"replica-exchange"``: each chain the coldest of ``replicas``
            replicas on an adaptive temperature ladder (an exact sample of a low constant
            temperature without chains getting stuck; ``final`` and ``engine`` do not apply).

    Returns:
        :class:`Generated` with ``outputs`` the decoded strings (one per record) and ``records``
        (``chain``, ``step``, ``text``, ``energy`` (free energy, lower is likelier),
        ``in_training_data``).
    """
    steps = DEFAULT_STEPS if steps is None else steps
    if dedupe and every is None:
        raise ConfigError(
            "dedupe needs every (it drops repeats among the states recorded along a chain)", "dedupe", "every"
        )
    if prefix is not None and suffix is not None:
        raise ConfigError("give prefix or suffix, not both", "prefix", "suffix")
    codec = checkpoint.codec
    x = known = None
    if prefix is not None:
        x, known = codec.clamp_prefix(prefix)
    elif suffix is not None:
        x, known = codec.clamp_suffix(suffix)
    train_states = checkpoint.data["train"] if len(checkpoint.data["train"]) else None
    if sampler == "replica-exchange":
        if final != "sample" or engine not in ("auto", "torch"):
            raise ConfigError("replica exchange takes neither final nor engine; leave them out", "final", "engine")
        own = {"replicas": replicas}
    elif sampler == "gibbs":
        own = {"final": final, "engine": engine}
    else:
        raise ConfigError(f"sampler must be gibbs or replica-exchange for string models, got {sampler!r}", "sampler")
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
        seed=seed,
        data=train_states,
        codec=codec,
        record_every=every,
        progress=progress,
        on_step=on_step,
        sampler=sampler,
        **own,
    )
    seconds = time.perf_counter() - started
    records = string_records(chain, codec, training_strings(checkpoint), dedupe=dedupe)
    sweeps = num_samples * steps * (replicas if sampler == "replica-exchange" else 1)
    return Generated(
        chain=chain,
        outputs=[r["text"] for r in records],
        records=records,
        seconds=seconds,
        extra={"yield": string_yield(checkpoint, records, sweeps, seconds)},
    )


def string_yield(checkpoint, records: list[dict], chain_sweeps: int, seconds: float) -> dict | None:
    """:func:`gibbsdream.summary.yield_measure` of ``records``: the character trigram model fitted on
    the checkpoint's training strings, the bar set by its validation strings (None without them)."""
    train, held = (checkpoint.data.get(k) for k in ("train", "validation"))
    if train is None or held is None or not len(train) or not len(held):
        return None
    ngram = CharNGram().fit(checkpoint.codec.decode(train))
    return yield_measure(records, ngram, checkpoint.codec.decode(held), chain_sweeps, seconds)


# ---- scoring -------------------------------------------------------------------------------------


def held_out_strings(checkpoint) -> torch.Tensor:
    """The checkpoint's validation split, ``(N, V)`` states; a ConfigError when it kept none."""
    states = checkpoint.data.get("validation")
    if states is None or len(states) == 0:
        raise ConfigError(
            f"checkpoint {checkpoint.path} keeps no held-out strings (it was trained with a validation fraction of "
            "0); give data (a text file with one string per line)",
            "data",
        )
    return states


def evaluate(
    checkpoint,
    data=None,
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
        data: None or ``"heldout"`` (the checkpoint's validation split), a text file with one
            string per line, ``builtin:NAME``, or a list of strings.
        method: ``"auto"`` (exact when the model is small enough to enumerate), ``"exact"``, ``"ais"``.
        ais_runs, ais_betas: parallel AIS runs and intermediate distributions.
        skip_invalid: skip strings the model cannot encode instead of refusing them.
        seed: AIS randomness.
        progress: a progress bar over log Z's work (the enumeration's chunks, or AIS's steps).

    Returns:
        :class:`Evaluation` whose values hold ``strings``, ``skipped``, ``log_z`` (± ``log_z_stderr``,
        by ``log_z_method``), ``mean_log_likelihood`` (nats per string, ± ``..._stderr`` over strings),
        ``bits_per_character``, ``mean_pseudo_log_likelihood`` and ``seconds``.
    """
    if data is None or data == "heldout":
        held = held_out_strings(checkpoint)
        kept = checkpoint.codec.decode(held)
        corpus = checkpoint.config.get("corpus")
        source = corpus.get("source") if isinstance(corpus, dict) else None
        label = f"held-out validation split of {source}" if isinstance(source, str) else "held-out validation split"
        report = CorpusReport(total=len(kept), kept=len(kept))
    else:
        lines = list(data) if isinstance(data, (list, tuple)) else read_lines(data)
        label = data if isinstance(data, str) else f"{len(lines)} strings"
        kept, report = checkpoint.codec.filter(lines)
        if report.skipped and not skip_invalid:
            reason, examples = next(iter(report.examples.items()))
            number, text = examples[0]
            raise ConfigError(
                f"{report.total - report.kept} of {report.total} lines cannot be encoded by this model (line "
                f"{number}, {text!r}: {reason}); pass skip_invalid=True to ignore them",
                "skip_invalid",
            )
        if not kept:
            raise UsageError(f"none of the {report.total} lines of {data} can be encoded by this model")
    model = checkpoint.model
    states = checkpoint.codec.encode(kept).to(model.weight.device)
    started = time.perf_counter()
    used = resolve_method(model, method)
    log_z, stderr = log_partition(
        model, method=used, num_runs=ais_runs, num_betas=ais_betas, seed=seed, progress=progress
    )
    ll = log_likelihood(model, states, log_z)
    pll = pseudo_log_likelihood(model, states)
    values = {
        "checkpoint": str(checkpoint.path),
        "data": label,
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


# ---- exporting a split ---------------------------------------------------------------------------


def export_split(checkpoint, split: str, out, *, overwrite: bool = False, progress: bool = False) -> Exported:
    """Write the strings of a split the checkpoint keeps to the UTF-8 text file ``out``, one a line.

    Each is decoded by the checkpoint's codec with the padding dropped, as the training corpus looked
    to the model (case-folded, rare characters replaced, where the corpus was), so that
    ``evaluate(checkpoint, out)`` scores the same strings as ``evaluate(checkpoint, "heldout")``.

    Args:
        checkpoint: a loaded RBM checkpoint.
        split: ``"train"`` or ``"valid"`` (an RBM keeps no test split).
        out: the text file to write (atomically).
        overwrite: replace a file that exists and is not empty (refused otherwise).
        progress: unused: a split is written in one go.
    """
    part = check_split(split)
    if part not in ("train", "validation"):
        raise UsageError(
            f"{checkpoint.path} holds {FAMILY.title}, which keeps a train and a valid split only (no {split} "
            "split); export valid for its held-out strings"
        )
    states = checkpoint.data.get(part)
    if states is None or len(states) == 0:
        raise UsageError(
            f"checkpoint {checkpoint.path} keeps no {split} strings"
            + (" (it was trained with a validation fraction of 0)" if part == "validation" else "")
        )
    out = Path(out)
    check_export_target(out, overwrite, folder=False)
    strings = checkpoint.codec.decode(states)
    atomic_write_text(out, "".join(f"{text}\n" for text in strings))
    return Exported(path=out, split=split, count=len(strings), outputs="strings")


# ==== training ========================================================================================


@dataclass
class CorpusOptions:
    """How a text corpus becomes training states (saved in the checkpoint's codec and "corpus" entry)."""

    max_length: int | None = None  # positions per string; longer lines are skipped (None: the longest line)
    case_fold: bool = False  # fold case before learning the alphabet
    pad_side: str = "right"  # where padding goes: "right" or "left"
    min_char_count: int = 1  # characters seen fewer times than this are rare
    rare: str = "skip"  # rare characters: "skip" their lines, "replace" them with '?', or "keep" them


# The model fields the data sets (the codec's positions and alphabet): a caller does not.
SET_BY_DATA = ("num_visible", "num_categories")
# What a resumed run keeps: the settings that shape the model, the data or its split.
FIXED_ON_RESUME = {
    "num_hidden",
    "data",
    "max_length",
    "case_fold",
    "pad_side",
    "min_char_count",
    "rare",
    "validation_fraction",
    "seed",
    "batch_size",
    "persistent",
}
# The training settings compared with the checkpoint's on resume; epochs (the total to reach) and the
# engine (the same numbers either way) are applied as given.
COMPARED_ON_RESUME = (
    "batch_size",
    "learning_rate",
    "lr_decay",
    "momentum",
    "weight_cost",
    "cd_steps",
    "persistent",
    "validation_fraction",
    "monitor_every",
    "seed",
)


def train(
    data: str | None,
    out,
    *,
    model=None,
    training=None,
    corpus=None,
    resume: bool = False,
    apply_changes: bool = False,
    device="auto",
    progress: bool = False,
    on_epoch=None,
    on_event=None,
) -> Trained:
    """Train an RBM on a corpus of strings into the checkpoint folder ``out``; see :func:`gibbsdream.train`.

    ``model``: :class:`RBMConfig` fields (``num_hidden``); ``training``: :class:`RBMTrainConfig`
    fields; ``corpus``: :class:`CorpusOptions` fields. ``on_event(name, info)`` hears ``"corpus"``
    (``data``, ``report``, ``codec``: before training), ``"changes"`` ({name: (old, new)}: a resume
    continues with them) and ``"reseeded"`` (the checkpoint came from another kind of device).
    The result's ``summary`` judges the validation pseudo-log-likelihood (the training one without a
    validation split) for ``still_improving``.
    """
    started = time.perf_counter()
    out = Path(out)
    given_model = given_fields(model, [f.name for f in fields(RBMConfig)], "model")
    for name in SET_BY_DATA:  # an RBMConfig's are replaced by the data's; a mapping's are a mistake
        if name in given_model and isinstance(model, Mapping):
            raise ConfigError(f"{name} is set by the corpus (the codec's size); leave it out", name)
        given_model.pop(name, None)
    given_training = given_fields(training, [f.name for f in fields(RBMTrainConfig)], "training")
    given_corpus = given_fields(corpus, [f.name for f in fields(CorpusOptions)], "corpus")
    event = on_event or (lambda name, info: None)
    target = resolve_device(device)
    with checkpoint_held(out, resume):
        if resume:
            trainer, corpus_saved, changes = _resumed(
                data, out, target, given_model, given_training, given_corpus, apply_changes, event
            )
        else:
            fresh_run(out, apply_changes)
            trainer, corpus_saved = _fresh(data, target, given_model, given_training, given_corpus, event)
            changes = {}
        result = Trained(out, trainer.epoch, trainer.history, trainer.model, trainer.codec, trainer, changes=changes)
        first_epoch = trainer.epoch
        if trainer.epoch >= trainer.config.epochs:
            result.trained = False
            result.summary = _summary(trainer, first_epoch, started)
            return result

        def saved(t):
            saving = time.perf_counter()
            save_trainer(t, out, corpus_saved)
            t.timings.saving += time.perf_counter() - saving
            if on_epoch is not None:
                on_epoch(t)

        trainer.fit(progress=progress, on_epoch=saved)
        result.epochs = trainer.epoch
        result.summary = _summary(trainer, first_epoch, started)
        return result


def _summary(trainer: RBMTrainer, first_epoch: int, started: float) -> TrainingSummary:
    config, every = trainer.config, trainer.monitor_interval()
    num_train, num_validation = len(trainer.train_data), len(trainer.validation_data)
    return summarize(
        trainer.history,
        ("validation_pseudo_log_likelihood", "train_pseudo_log_likelihood"),
        higher_is_better=True,
        seconds=time.perf_counter() - started,
        timings=trainer.timings,
        first_epoch=first_epoch,
        epochs=trainer.epoch,
        target_epochs=config.epochs,
        monitoring={
            "every": every,
            "auto": config.monitor_every == "auto",
            "strings": min(config.monitor_size, num_train),
            "validation_strings": min(config.monitor_size, num_validation),
            # the estimate "auto" goes by: what one check costs, in epochs of updates
            "check_cost_in_epochs": check_cost_in_epochs(
                config, trainer.model.num_categories, num_train, num_validation
            ),
        },
    )


def _fresh(data, target, given_model, given_training, given_corpus, event):
    if data is None:
        raise ConfigError("data is needed to start a run (a corpus file or builtin:NAME)", "data")
    RBMConfig(1, **given_model).check()  # before the corpus is read
    config = RBMTrainConfig(**given_training).check()
    options = CorpusOptions(**given_corpus)
    lines = read_lines(data)
    codec, kept, report = StringCodec.fit(
        lines,
        max_length=options.max_length,
        case_fold=options.case_fold,
        pad_side=options.pad_side,
        min_char_count=options.min_char_count,
        rare=options.rare,
    )
    event("corpus", {"data": data, "report": report, "codec": codec})
    model_config = RBMConfig(codec.max_length, **given_model, num_categories=codec.num_categories).check()
    check_training_memory(codec, len(kept), model_config, config, options.max_length)
    states = codec.encode(kept)
    train_states, val_states = split_data(states, config.validation_fraction, config.seed)
    model = RBM(model_config)
    model.reset_parameters(make_generator(config.seed, "cpu"))
    model.init_visible_bias_from_data(train_states)
    trainer = RBMTrainer(model.to(target), config, train_states, val_states, codec=codec)
    saved = {
        "source": corpus_source(data),
        "min_char_count": options.min_char_count,
        "rare": options.rare,
        **report.to_dict(),
    }
    return trainer, saved


def _resumed(data, out, target, given_model, given_training, given_corpus, apply_changes, event):
    checkpoint = load_checkpoint(out, device=target, family="rbm")
    saved = checkpoint.config
    if (
        not isinstance(saved.get("training"), dict)
        or "epoch" not in (saved.get("trainer") or {})
        or not checkpoint.trainer
    ):
        raise ConfigError(
            f"{out} was not written by `gibbsdream train rbm`, so it cannot be resumed; train into a new out folder",
            "out",
        )
    codec_config, corpus_saved = saved.get("codec") or {}, saved.get("corpus") or {}
    trained_with = {
        "num_hidden": saved["model"].get("num_hidden"),
        "data": corpus_saved.get("source"),
        **{name: saved["training"][name] for name in COMPARED_ON_RESUME if name in saved["training"]},
        **{name: codec_config[name] for name in ("max_length", "case_fold", "pad_side") if name in codec_config},
        **{name: corpus_saved[name] for name in ("min_char_count", "rare") if name in corpus_saved},
    }
    given = {**given_model, **given_training, **given_corpus}
    if data is not None:
        given["data"] = trained_with["data"] if same_file(data, trained_with["data"]) else data
    changes = changes_on_resume(trained_with, given, FIXED_ON_RESUME, apply_changes)
    if changes:
        event("changes", changes)
    overrides = {name: new for name, (_, new) in changes.items()}
    if "epochs" in given_training:
        overrides["epochs"] = check_epochs(given_training["epochs"])
    if "engine" in given_training:
        overrides["engine"] = given_training["engine"]
    try:
        # Checkpoints before Model(config) repeat num_hidden here: taken aside (training.legacy).
        config = RBMTrainConfig(**{**saved["training"], **overrides}).check()
    except TypeError:
        raise UsageError(
            f"{out} has training settings this gibbsdream cannot read; resume it with the version that wrote it"
        ) from None
    trainer = RBMTrainer(
        checkpoint.model,
        config,
        checkpoint.data["train"],
        checkpoint.data["validation"],
        codec=checkpoint.codec,
        history=checkpoint.history,
    )
    if not trainer.load_state_tensors(checkpoint.trainer, checkpoint.config["trainer"]["epoch"]):
        event("reseeded", {})
    return trainer, checkpoint.config.get("corpus"), changes


def check_training_memory(codec, strings: int, model: RBMConfig, config: RBMTrainConfig, max_length) -> None:
    """Refuse, before encoding the corpus, a model and data that cannot fit in the memory free here
    (a corpus with one line of a million characters makes every string a million positions)."""
    positions, categories = codec.max_length, codec.num_categories
    needed = rbm_training_bytes(strings, positions, categories, model.num_hidden, config.batch_size)
    what = product_text((strings, "strings"), (positions, "positions"), (categories, "categories"))
    remedy = (
        "lower num_hidden"
        if max_length is not None
        else f"the longest line has {positions:,} characters: pass max_length to skip long lines, or lower num_hidden"
    )
    try:
        check_memory(needed, f"{what}, num_hidden {model.num_hidden:,}", remedy)
    except UsageError as err:
        raise ConfigError(str(err), "num_hidden", "max_length") from None


FAMILY = register(
    Family(
        train=train,
        train_options="corpus",
        name="rbm",
        title="an RBM (string) model",
        label="string (RBM)",
        outputs="strings",
        prepare=prepare,
        generate=generate,
        evaluate=evaluate,
        export_split=export_split,
        generate_options=("init", "final", "prefix", "suffix", "dedupe", "engine", "sampler", "replicas"),
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

"""Training RBMs by contrastive divergence (CD-k) and persistent CD (PCD-k).

The gradient of the average log-likelihood is ``E_data[-dF/dθ] - E_model[-dF/dθ]``; CD
estimates the model term from k Gibbs sweeps started at the data, PCD from chains that persist
across updates. The gradients come from the sufficient statistics (hidden probabilities times
one-hot visibles, :meth:`RBM.contrastive_gradients`); the step is SGD with momentum and an L2
weight cost on the weights only, as in Hinton's practical guide.

Two engines run the same algorithm: ``torch`` (any device, any RBM) and ``numba`` (categorical
RBMs on the CPU, with a PyTorch built with MKL), which runs whole batches of updates as one compiled
loop on several threads, each owning a block of hidden units (:mod:`gibbsdream.kernels.rbm`),
because eager PyTorch spends most of a small-batch update on per-operation overhead there. Both
draw the same random numbers in the same order; they differ only by float rounding.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch

from .. import kernels
from ..checkpoint import save_checkpoint
from ..errors import ConfigError, check_finite
from ..kernels.threads import default_threads, new_meeting, parts_for, run_workers
from ..likelihood import pseudo_log_likelihood
from ..models.rbm import RBMConfig
from ..progress import progress_bar
from ..randomness import check_seed, make_generator
from ..sampling.api import check_count, sample
from ..sampling.categorical import bernoulli_from_probs
from .legacy import accepts_model_fields
from .runs import Timings

# Upper bounds on the settings that size working arrays (the persistent chains are batch_size states,
# the compiled loop draws cd_steps x chains x hidden uniforms per update, each epoch samples the fantasies).
MOST = {"batch_size": 2**20, "cd_steps": 1000, "fantasy_particles": 2**16}


@accepts_model_fields(RBMConfig, ("num_hidden",))
@dataclass
class RBMTrainConfig:
    """Hyper-parameters of RBM training (all have working defaults); the model's shape is its
    :class:`~gibbsdream.models.rbm.RBMConfig` (``num_hidden`` is still accepted here, and ignored
    by the trainer, which trains the model it is given)."""

    epochs: int = 20
    batch_size: int = 64
    learning_rate: float = 0.1
    lr_decay: float = 0.98  # multiplies the learning rate after every epoch
    momentum: float = 0.9
    weight_cost: float = 1e-3  # L2 penalty on the weights (not the biases)
    cd_steps: int = 1
    persistent: bool = False
    validation_fraction: float = 0.05
    monitor_size: int = 200  # training strings (and as many validation strings) each check scores
    fantasy_particles: int = 8  # decoded into the history at each check
    # Epochs between checks (pseudo-log-likelihood, free-energy gap, fantasies; the last epoch is checked
    # too); 0 = never; "auto": as often as keeps them within a tenth of the updates' cost (see monitor_interval).
    monitor_every: int | str = "auto"
    seed: int = 0
    engine: str = (
        "auto"  # "auto" (numba for categorical RBMs on the CPU where it can run, else torch), "torch", "numba"
    )

    def check(self) -> RBMTrainConfig:
        """Raise a ConfigError naming the first impossible field; returns self."""
        # NaN passes every comparison (nan < 0 is False), so non-finite numbers are refused first.
        check_finite(self, [f.name for f in fields(self)])
        check_seed(self.seed, f"{type(self).__name__}.seed")
        if self.model_fields:  # given the old way: checked as the model config checks them
            RBMConfig(1, **self.model_fields).check()
        for name in ("epochs", "batch_size", "cd_steps", "monitor_size"):
            check_count(name, getattr(self, name))
        check_count("fantasy_particles", self.fantasy_particles, least=0)
        every = self.monitor_every
        if every != "auto" and (isinstance(every, bool) or not isinstance(every, int) or every < 0):
            raise ConfigError(f"monitor_every must be a whole number >= 0 or auto, got {every!r}", "monitor_every")
        for name, most in MOST.items():  # a damaged config.json must not ask for absurd allocations
            if getattr(self, name) > most:
                raise ConfigError(f"{name} must be at most {most}, got {getattr(self, name)}", name)
        for name in ("learning_rate", "lr_decay"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise ConfigError(f"{name} must be a positive number, got {value}", name)
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"momentum must lie in [0, 1), got {self.momentum}", "momentum")
        if not (self.weight_cost >= 0 and math.isfinite(self.weight_cost)):
            raise ConfigError(f"weight_cost must be a number >= 0, got {self.weight_cost}", "weight_cost")
        if not isinstance(self.persistent, bool):
            raise ConfigError(f"persistent must be true or false, got {self.persistent!r}", "persistent")
        if not 0 <= self.validation_fraction < 1:
            raise ConfigError(
                f"validation_fraction must lie in [0, 1), got {self.validation_fraction}", "validation_fraction"
            )
        if self.engine not in ENGINES:
            raise ConfigError(f"engine must be one of {', '.join(ENGINES)}, got {self.engine!r}", "engine")
        return self


ENGINES = ("auto", "torch", "numba")


def resolve_engine(engine: str, model) -> str:
    """``"torch"`` or ``"numba"`` for training ``model`` where its parameters are now.

    ``"auto"`` takes numba for a categorical RBM on the CPU when the compiled loop can run here,
    torch otherwise; asking for numba where it cannot run is a UsageError saying why.
    """
    fits = kernels.fits_rbm_loops(model)
    if engine == "torch" or (engine == "auto" and not fits):
        return "torch"
    if engine == "numba" and not fits:
        raise ConfigError(
            'engine="numba" trains categorical RBMs on the CPU only; use engine="torch" (or "auto")', "engine"
        )
    loops = kernels.rbm_loops()
    if isinstance(loops, ImportError):
        if engine == "numba":
            raise ConfigError(f'engine="numba" cannot run here ({loops}); use engine="torch" (or "auto")', "engine")
        return "torch"
    return "numba"


UPDATES_PER_CHUNK = 32  # the numba engine draws random numbers for this many updates at a time

# monitor_every="auto": the checks may cost at most this share of the updates, by check_cost_in_epochs.
MONITOR_SHARE = 0.1
# What checking one string costs (its exact pseudo-log-likelihood: V*K*H softplus terms), in units of
# one string's update per Gibbs step (whose work grows more slowly with K), estimated as
# CHECK_COST * K / (K + CHECK_COST_HALF). Measured on the 2-core VM, default engine, 256 hidden units
# (docs/benchmarks.md, "Monitoring RBM training"): 58-157 for a names-like corpus (K=27), 134-368 for
# builtin:languages (K=85), 232-474 for builtin:regions (K=151), the machine's speed swinging from run
# to run; the estimate (175, 416, 577) lies above each, erring towards fewer checks (the torch
# engine's slower updates make checks relatively cheaper still).
CHECK_COST, CHECK_COST_HALF = 1150.0, 150.0
FANTASY_STEPS = 100  # Gibbs sweeps that make the fantasy particles of a non-persistent run


def check_cost_in_epochs(config: RBMTrainConfig, num_categories: int, num_train: int, num_validation: int) -> float:
    """The estimated cost of one check (:meth:`RBMTrainer.monitor`) in epochs of updates.

    From the sizes and the settings alone, so that a run and every resume of it check at the same
    epochs whatever the machine's speed at the time.
    """
    scored = min(config.monitor_size, num_train) + min(config.monitor_size, num_validation)
    fantasies = 0 if config.persistent else FANTASY_STEPS * config.fantasy_particles  # chain sweeps
    check = CHECK_COST * num_categories / (num_categories + CHECK_COST_HALF) * scored + fantasies
    return check / (num_train * (config.cd_steps + 1))


def monitor_interval(config: RBMTrainConfig, num_categories: int, num_train: int, num_validation: int) -> int:
    """Epochs between checks (0: none). The checks come after every multiple of it and after the last
    epoch (``config.epochs``): ``ceil(epochs / interval)`` checks in all.

    ``config.monitor_every``, or for ``"auto"`` the smallest interval whose checks cost at most
    :data:`MONITOR_SHARE` of the run's updates by :func:`check_cost_in_epochs`; 0 when even one does not.
    """
    if config.monitor_every != "auto":
        return config.monitor_every
    cost = check_cost_in_epochs(config, num_categories, num_train, num_validation)
    affordable = math.floor(MONITOR_SHARE * config.epochs / cost)
    return 0 if affordable < 1 else math.ceil(config.epochs / affordable)


def split_data(data: torch.Tensor, validation_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Shuffle ``(N, V)`` states with ``seed`` and hold out a validation fraction."""
    order = torch.randperm(data.shape[0], generator=make_generator(seed, "cpu"))
    num_val = round(validation_fraction * data.shape[0])
    if validation_fraction > 0 and data.shape[0] - num_val < 1:
        raise ConfigError(
            "the corpus is too small to hold out a validation set; use validation_fraction 0", "validation_fraction"
        )
    return data[order[num_val:]], data[order[:num_val]]


@dataclass
class RBMTrainer:
    """Holds everything a run needs to continue: the model, momentum buffers, RNG and chains.

    Use :meth:`fit` to train; :meth:`state_tensors` and :meth:`load_state_tensors` move the
    trainer through a checkpoint (``--resume``).
    """

    model: torch.nn.Module
    config: RBMTrainConfig
    train_data: torch.Tensor
    validation_data: torch.Tensor
    codec: object | None = None
    epoch: int = 0
    history: list = field(default_factory=list)

    def __post_init__(self):
        model, cfg = self.model, self.config
        device = model.weight.device
        self.generator = make_generator(cfg.seed, device)
        self.shuffle_generator = make_generator(cfg.seed + 1, "cpu")
        # Momentum buffers of a plain SGD-with-momentum step (the update rule of torch.optim.SGD).
        # Written out because torch.optim's per-step overhead measured ~150 µs here, a sixth of
        # a whole CD update at batch 64.
        self.velocity = {name: torch.zeros_like(p) for name, p in model.named_parameters()}
        self.engine = resolve_engine(cfg.engine, model)
        self._loops = kernels.rbm_loops() if self.engine == "numba" else None
        self._views, self._views_key = (), None  # see _parameter_arrays
        self._scratch_arrays, self._pool = {}, None
        self.threads = default_threads(model.num_hidden)
        self.timings = Timings()  # this session's, not saved
        self.chains = None
        if cfg.persistent:
            start = torch.randint(0, len(self.train_data), (cfg.batch_size,), generator=self.shuffle_generator)
            self.chains = self.train_data[start].to(device)

    @property
    def learning_rate(self) -> float:
        """This epoch's rate; a function of the epoch alone, so ``--resume`` needs no scheduler state."""
        return self.config.learning_rate * self.config.lr_decay**self.epoch

    # ---- one update ------------------------------------------------------------------------

    @torch.no_grad()
    def _updates(self, data: torch.Tensor, batch_size: int, advance) -> None:
        """One update per ``batch_size`` rows of ``data``, in order; ``advance(n)`` after each ``n``."""
        if self.engine == "numba":
            return self._compiled_updates(data, batch_size, advance)
        for start in range(0, len(data), batch_size):
            self.update(data[start : start + batch_size])
            advance(1)

    @torch.no_grad()
    def update(self, v_data: torch.Tensor) -> None:
        """One CD-k / PCD-k step on a batch ``(B, V)`` of training states."""
        if self.engine == "numba":
            return self._compiled_updates(v_data, len(v_data))
        model, num_data = self.model, v_data.shape[0]
        if self.chains is None:
            v = v_data
            data_hidden = hidden_probs = torch.sigmoid(model.hidden_logits(v_data))
        else:
            # The data and the persistent chains share one gather and one sigmoid.
            v = self.chains
            both = torch.sigmoid(model.hidden_logits(torch.cat([v_data, v])))
            data_hidden, hidden_probs = both[:num_data], both[num_data:]
        for _ in range(self.config.cd_steps):
            h = bernoulli_from_probs(hidden_probs, self.generator)
            v = model.sample_visible(h, 1.0, self.generator)
            hidden_probs = torch.sigmoid(model.hidden_logits(v))
        if self.chains is not None:
            self.chains = v
        self._step(model.contrastive_gradients(v_data, data_hidden, v, hidden_probs))

    def _compiled_updates(self, data: torch.Tensor, batch_size: int, advance=None) -> None:
        """``len(data) // batch_size`` updates, batch after batch of ``data (N * batch_size, V)``, by
        the compiled loop (:func:`gibbsdream.kernels.rbm.train_worker`) on ``self.threads`` threads,
        this one and ``threads - 1`` helpers; ``advance(n)`` is called as updates finish (a progress bar).

        The random numbers are drawn a chunk of updates at a time (:func:`.kernels.threads.run_workers`),
        from the trainer's generator in the torch engine's order (per update and Gibbs step: the
        hidden uniforms, then the visible ones).
        """
        cfg, model, loops = self.config, self.model, self._loops
        data = data.contiguous()
        num_updates = len(data) // batch_size
        num_chains = len(self.chains) if self.chains is not None else batch_size
        per_chunk = min(UPDATES_PER_CHUNK, num_updates)
        shape = (per_chunk, cfg.cd_steps, num_chains)
        hidden_uniforms = torch.empty(*shape, model.num_hidden, dtype=model.weight.dtype)
        visible_uniforms = torch.empty(*shape, model.num_visible, dtype=torch.float64)
        chains = (
            self.chains if self.chains is not None else torch.empty(num_chains, model.num_visible, dtype=torch.long)
        )
        parameters, velocity = self._parameter_arrays
        dtype = parameters.weight_t.dtype
        run = loops.TrainRun(
            data=data.numpy(),
            chains=chains.numpy(),
            batch_size=batch_size,
            num_categories=model.num_categories,
            persistent=self.chains is not None,
            coefficients=np.array(
                [self.learning_rate, cfg.momentum, cfg.weight_cost, 1.0 / num_chains, -1.0 / batch_size], dtype
            ),
        )
        uniforms = loops.Uniforms(hidden_uniforms.numpy(), visible_uniforms.numpy())
        threads = self.threads
        meeting = new_meeting(threads, num_chains, model.num_visible * model.num_categories, dtype)

        def feed(start, stop):
            for u in range(stop - start):
                for s in range(cfg.cd_steps):
                    hidden_uniforms[u, s].uniform_(generator=self.generator)
                    visible_uniforms[u, s].uniform_(generator=self.generator)

        arguments = [
            (run, uniforms, parameters, velocity, meeting, self._scratch(t, batch_size, num_chains))
            for t in range(threads)
        ]
        run_workers(
            loops.train_worker,
            parts_for(threads, model.num_hidden),
            num_updates,
            per_chunk,
            feed,
            arguments,
            loops.check_train_arguments,
            meeting.counters,
            self._helpers(threads - 1),
            advance,
        )

    def _helpers(self, count: int):
        """This trainer's threads for the compiled loop's workers 1..T-1 (the calling thread is
        worker 0). Each trainer has its own: with one pool for all, two runs in one process could
        each hold some of its threads while waiting for the rest."""
        if self._pool is None or self._pool._max_workers < count:
            if self._pool is not None:
                self._pool.shutdown(wait=False)
            self._pool = ThreadPoolExecutor(max_workers=max(1, count), thread_name_prefix="gibbsdream-rbm")
        return self._pool

    def _scratch(self, thread: int, batch_size: int, num_chains: int):
        """The :class:`~gibbsdream.kernels.rbm.TrainWorkspace` of one thread, kept between calls."""
        model = self.model
        part = parts_for(self.threads, model.num_hidden)[thread]
        dtype = self._parameter_arrays[0].weight_t.dtype
        key = (part, batch_size, num_chains, dtype)
        if key not in self._scratch_arrays:
            rows = model.num_visible * model.num_categories
            self._scratch_arrays[key] = self._loops.train_workspace(
                part, batch_size, num_chains, rows, model.num_categories, dtype
            )
        return self._scratch_arrays[key]

    @property
    def _parameter_arrays(self) -> tuple:
        """NumPy views of the parameters and of their velocities in the loop's layout, two
        :class:`~gibbsdream.kernels.rbm.Parameters`: ``weight_t (V*K, H)``, ``visible_bias (V*K,)``,
        ``hidden_bias (H,)``; rebuilt when the parameters' memory changes."""
        model = self.model
        key = model.weight.data_ptr()
        if self._views_key != key:
            if self.config.momentum:
                velocity = self.velocity
            else:  # torch.optim.SGD keeps no velocity without momentum; a weight cost still needs a buffer
                velocity = {name: torch.zeros_like(v) for name, v in self.velocity.items()}
            self._views = (
                self._loops.Parameters(
                    model.flat_weight_t().detach().numpy(),
                    model.visible_bias.detach().view(-1).numpy(),
                    model.hidden_bias.detach().numpy(),
                ),
                self._loops.Parameters(
                    velocity["weight"].reshape(model.num_hidden, -1).t().numpy(),
                    velocity["visible_bias"].view(-1).numpy(),
                    velocity["hidden_bias"].numpy(),
                ),
            )
            self._views_key = key
        return self._views

    def _step(self, gradients: tuple) -> None:
        """SGD with momentum (torch.optim.SGD's rule); the L2 weight cost applies to the weights only.

        One fused ``_foreach`` call per stage (one in all without momentum) instead of three or
        four small operations per parameter: at batch 64 each call costs more in overhead than in
        arithmetic.
        """
        cfg = self.config
        params = [self.model.weight, self.model.visible_bias, self.model.hidden_bias]
        grads = list(gradients)  # fresh tensors, so they may be changed in place
        if cfg.weight_cost:
            grads[0].add_(params[0], alpha=cfg.weight_cost)
        if cfg.momentum:
            velocity = [self.velocity[name] for name in ("weight", "visible_bias", "hidden_bias")]
            torch._foreach_mul_(velocity, cfg.momentum)
            torch._foreach_add_(velocity, grads)
            grads = velocity
        torch._foreach_add_(params, grads, alpha=-self.learning_rate)

    # ---- epochs ------------------------------------------------------------------------------

    def fit(self, progress: bool = True, on_epoch=None) -> RBMTrainer:
        """Train until ``config.epochs`` epochs are done; returns the trainer (its ``history`` holds
        one row per epoch, with the checks of :meth:`monitor` after the epochs :meth:`monitor_interval`
        picks), as :meth:`NADETrainer.fit` and scikit-learn's ``fit`` do. ``timings`` adds up the
        seconds of the updates and of the checks.

        ``on_epoch(trainer)`` is called after every epoch (e.g. to save a checkpoint).
        """
        cfg, device = self.config, self.model.weight.device
        n = self.train_data.shape[0]
        batches = math.ceil(n / cfg.batch_size)
        data = self.train_data.to(device)
        interval = self.monitor_interval()
        while self.epoch < cfg.epochs:
            started = time.perf_counter()
            learning_rate = self.learning_rate
            shuffled = data[torch.randperm(n, generator=self.shuffle_generator).to(device)]
            full_batches, size = n // cfg.batch_size, cfg.batch_size
            with progress_bar(batches, f"epoch {self.epoch + 1}/{cfg.epochs}", enabled=progress) as advance:
                if full_batches:
                    self._updates(shuffled[: full_batches * size], size, advance)
                if n % size:  # the short last batch
                    self._updates(shuffled[full_batches * size :], n % size, advance)
            seconds = time.perf_counter() - started
            self.timings.training += seconds
            self.epoch += 1
            row = {"epoch": self.epoch, "seconds": round(seconds, 3), "learning_rate": learning_rate}
            if interval and (self.epoch % interval == 0 or self.epoch == cfg.epochs):
                started = time.perf_counter()
                row.update(self.monitor())
                self.timings.monitoring += time.perf_counter() - started
                self.timings.checks += 1
            self.history.append(row)
            if on_epoch is not None:
                on_epoch(self)
        return self

    def monitor_interval(self) -> int:
        """Epochs between this run's checks (0: none); see :func:`monitor_interval`."""
        return monitor_interval(self.config, self.model.num_categories, len(self.train_data), len(self.validation_data))

    @torch.no_grad()
    def monitor(self) -> dict:
        """The model's health: exact pseudo-log-likelihood of ``monitor_size`` training and validation
        strings (the same ones at every check), free-energy gap, fantasy particles."""
        cfg, model = self.config, self.model
        device = model.weight.device
        pick = make_generator(cfg.seed + 2, "cpu")  # the same monitoring subsets every epoch
        train_rows = self.train_data[torch.randperm(len(self.train_data), generator=pick)[: cfg.monitor_size]].to(
            device
        )
        row = {"train_pseudo_log_likelihood": pseudo_log_likelihood(model, train_rows).mean().item()}
        if len(self.validation_data):
            val_rows = self.validation_data[: cfg.monitor_size].to(device)
            row["validation_pseudo_log_likelihood"] = pseudo_log_likelihood(model, val_rows).mean().item()
            same_size_train = train_rows[: len(val_rows)]
            # > 0 and growing means the model prefers its training strings: overfitting (Hinton §6).
            row["free_energy_gap"] = (
                model.free_energy(val_rows).mean() - model.free_energy(same_size_train).mean()
            ).item()
        if cfg.fantasy_particles:
            particles = self._fantasy_particles()
            row["fantasy"] = self.codec.decode(particles) if self.codec is not None else particles.tolist()
        return row

    def _fantasy_particles(self) -> torch.Tensor:
        if self.chains is not None:
            return self.chains[: self.config.fantasy_particles]

        chain = sample(
            self.model,
            num_chains=self.config.fantasy_particles,
            steps=FANTASY_STEPS,
            init="uniform",
            generator=make_generator(self.config.seed + 3, self.model.weight.device),
        )
        return chain.samples

    # ---- checkpoint state ----------------------------------------------------------------------

    def state_tensors(self) -> dict:
        tensors = {
            "generator_state": self.generator.get_state(),
            "shuffle_generator_state": self.shuffle_generator.get_state(),
        }
        tensors.update({f"velocity.{name}": v for name, v in self.velocity.items()})
        if self.chains is not None:
            tensors["persistent_chains"] = self.chains
        return tensors

    def load_state_tensors(self, tensors: dict, epoch: int) -> bool:
        """Restore a saved trainer; returns False when the sampling RNG could not be restored.

        That happens when the run is resumed on another kind of device (a CUDA generator's state
        does not fit a CPU generator): the generator is then re-seeded from ``seed + epoch``, so
        the run is still reproducible, but it is not the run that never stopped.
        """
        missing = {"generator_state", "shuffle_generator_state", *(f"velocity.{name}" for name in self.velocity)} - set(
            tensors
        )
        if missing:
            raise ConfigError(
                f"the checkpoint's training state lacks {', '.join(sorted(missing))}, so it cannot be "
                "resumed; restore it, or train into a new out folder",
                "out",
            )
        self.epoch = check_count("the checkpoint's epoch", epoch, least=0)
        saved = tensors["generator_state"]
        restored = saved.numel() == self.generator.get_state().numel()
        try:  # torch checks a state of this device's size; one of another size is another device's
            if restored:
                self.generator.set_state(saved)
            else:
                self.generator.manual_seed(self.config.seed + epoch)
            self.shuffle_generator.set_state(tensors["shuffle_generator_state"])
        except RuntimeError:
            raise ConfigError(
                "the checkpoint's random generator state is damaged, so it cannot be resumed; restore it, "
                "or train into a new out folder",
                "out",
            ) from None
        device = self.model.weight.device
        for name, velocity in self.velocity.items():
            velocity.copy_(tensors[f"velocity.{name}"].to(device))
        if "persistent_chains" in tensors:
            self.chains = tensors["persistent_chains"].long().to(device)
        return restored

    def extra_config(self) -> dict:
        return {"training": asdict(self.config), "trainer": {"epoch": self.epoch}}


def save_trainer(trainer: RBMTrainer, folder: Path, corpus: dict | None = None) -> None:
    """Checkpoint the trainer's model, data and state into ``folder``."""
    small = torch.int16 if trainer.model.num_categories < 2**15 else torch.int32
    extra = trainer.extra_config()
    if corpus is not None:
        extra["corpus"] = corpus
    save_checkpoint(
        folder,
        trainer.model,
        codec=trainer.codec,
        data={"train": trainer.train_data.to(small), "validation": trainer.validation_data.to(small)},
        trainer=trainer.state_tensors(),
        extra=extra,
        history=trainer.history,
    )

"""What the RBM's monitoring costs against an epoch of training: the measurements behind the default.

``gibbsdream train rbm`` checks the model between epochs (:meth:`RBMTrainer.monitor`): the exact
pseudo-log-likelihood of ``monitor_size`` training strings and as many validation strings, the
free-energy gap between them, and a few fantasy particles. This script measures, on three corpora
and the README's model (256 hidden units, persistent CD-1, the default engine), per epoch after one
warm-up epoch (which loads or compiles numba's loop): the seconds of the updates, of one check at
each ``--sizes`` value, and of a checkpoint save; the epochs and checks alternate, so a slow spell of
the machine hits both. From the fastest of each it derives the cost of checking one string relative
to one string's update per Gibbs step, divided by the number of categories K: the constant
``CHECK_COST_PER_CATEGORY`` that ``monitor_every="auto"`` estimates with.

Corpora (case folded): ``names``, the ASCII words of 3-12 letters in the built-in corpora (11,234
words, 12 positions, 27 symbols: a stand-in for a names file), ``builtin:languages`` (7,923 names,
58 positions, 85 symbols) and ``builtin:regions`` (4,891 names, 51 positions, 151 symbols).

Run:  python benchmarks/bench_monitoring.py [--epochs 7] [--sizes 200] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import statistics
import tempfile
import time
from pathlib import Path

import torch

from common import cpu_name
from gibbsdream import __version__ as gibbsdream_version
from gibbsdream.data.strings import StringCodec, read_lines
from gibbsdream.models import RBM
from gibbsdream.models.rbm import RBMConfig
from gibbsdream.randomness import make_generator
from gibbsdream.training import RBMTrainer, save_trainer, split_data
from gibbsdream.training.rbm import RBMTrainConfig


def names_like() -> list[str]:
    """The ASCII words of 3-12 letters in the built-in corpora, sorted."""
    words = set()
    for name in ("builtin:regions", "builtin:languages", "builtin:countries"):
        for line in read_lines(name):
            words.update(w for w in re.split(r"[\s\-/(),']+", line) if 3 <= len(w) <= 12 and w.isalpha())
    return sorted(w for w in words if w.isascii())


def corpus(name: str) -> list[str]:
    return names_like() if name == "names" else read_lines(name)


def trainer_for(lines: list[str], hidden: int, **settings) -> RBMTrainer:
    codec, kept, _ = StringCodec.fit(lines, case_fold=True)
    config = RBMTrainConfig(persistent=True, monitor_every=0, **settings).check()
    train, validation = split_data(codec.encode(kept), config.validation_fraction, config.seed)
    model = RBM(RBMConfig(codec.max_length, hidden, num_categories=codec.num_categories))
    model.reset_parameters(make_generator(config.seed, "cpu"))
    model.init_visible_bias_from_data(train)
    return RBMTrainer(model, config, train, validation, codec=codec)


def seconds(work) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def bench_epochs(name: str, hidden: int, epochs: int, sizes: tuple[int, ...]) -> dict:
    """Per epoch: the updates, one check at each monitor size, one save (seconds)."""
    trainer = trainer_for(corpus(name), hidden, epochs=1)
    model, config = trainer.model, trainer.config
    warm_up = seconds(lambda: trainer.fit(progress=False))
    folder = Path(tempfile.mkdtemp())
    rows = {"epoch": [], "save": [], **{f"check_{size}": [] for size in sizes}}
    for _ in range(epochs):
        config.epochs += 1
        rows["epoch"].append(seconds(lambda: trainer.fit(progress=False)))
        for size in sizes:
            config.monitor_size = size
            rows[f"check_{size}"].append(seconds(trainer.monitor))
        rows["save"].append(seconds(lambda: save_trainer(trainer, folder)))
    fastest = {key: min(values) for key, values in rows.items()}
    relative = {}
    for size in sizes:
        scored = min(size, len(trainer.train_data)) + min(size, len(trainer.validation_data))
        per_string = fastest[f"check_{size}"] / scored
        per_string_and_step = fastest["epoch"] / (len(trainer.train_data) * (config.cd_steps + 1))
        relative[size] = {
            "check_over_epoch": fastest[f"check_{size}"] / fastest["epoch"],
            "check_per_string_over_update_per_string_and_step": per_string / per_string_and_step,
            "the_same_per_category": per_string / per_string_and_step / model.num_categories,
        }
    return {
        "train_strings": len(trainer.train_data),
        "validation_strings": len(trainer.validation_data),
        "positions": model.num_visible,
        "categories": model.num_categories,
        "hidden": model.num_hidden,
        "engine": trainer.engine,
        "warm_up_epoch": warm_up,
        "seconds": {key: summary(values) for key, values in rows.items()},
        "fastest": relative,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpora", default="names,builtin:languages,builtin:regions")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=7)
    parser.add_argument("--sizes", default="200")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    sizes = tuple(int(s) for s in args.sizes.split(","))
    results = {
        "machine": {
            "cpu": cpu_name(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "gibbsdream": gibbsdream_version,
        },
        "epochs": {},
    }
    for name in args.corpora.split(","):
        results["epochs"][name] = found = bench_epochs(name, args.hidden, args.epochs, sizes)
        print(name, json.dumps(found, indent=1), flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()

"""Turning chains of string states into records and summary figures."""

from __future__ import annotations

import math

import torch


def training_strings(ckpt) -> set[str]:
    """The decoded training and validation strings of a string-model checkpoint, for novelty checks."""
    parts = [ckpt.data[k] for k in ("train", "validation") if k in ckpt.data and len(ckpt.data[k])]
    return set(ckpt.codec.decode(torch.cat(parts))) if parts else set()


def string_records(
    chain, codec, training_strings: set[str] | frozenset = frozenset(), dedupe: bool = False
) -> list[dict]:
    """One record per sample: ``{"chain", "step", "text", "energy", "in_training_data"}``.

    ``"energy"`` is the chain's trace value for the sample (free energy for an energy model; the
    key keeps the name the command line's JSON lines have always used).

    With frames recorded (``record_every``) every frame of every chain after step 0 is a sample,
    in chain order; ``dedupe`` drops a text already seen earlier in the same chain. Frame 0 is the
    chain's starting state (random noise, or the training strings it was started from), which the
    model has not touched yet, so it is no sample; ``chain.frames`` keeps it for animations.
    Without frames the final states are the samples.
    """
    if chain.frames is not None:
        kept = [f for f, step in enumerate(chain.frame_steps) if step > 0]
        states, steps = chain.frames[kept], [chain.frame_steps[f] for f in kept]
    else:
        states, steps = chain.samples.unsqueeze(0), [chain.trace.shape[0] - 1]
    texts = [codec.decode(frame) for frame in states]
    energies = chain.trace[torch.tensor(steps)].tolist()  # (F, N)
    records = []
    for c in range(chain.num_chains):
        seen = set()
        for f, step in enumerate(steps):
            text = texts[f][c]
            if dedupe and text in seen:
                continue
            seen.add(text)
            records.append(
                {
                    "chain": c,
                    "step": step,
                    "text": text,
                    "energy": round(energies[f][c], 4),
                    "in_training_data": text in training_strings,
                }
            )
    return records


def summarize_records(records: list[dict]) -> dict:
    """Mean energy, share of unique texts and share already in the training data."""
    if not records:
        return {
            "samples": 0,
            "mean_energy": float("nan"),
            "unique_share": float("nan"),
            "in_training_share": float("nan"),
        }
    texts = [r["text"] for r in records]
    return {
        "samples": len(records),
        "mean_energy": sum(r["energy"] for r in records) / len(records),
        "unique_share": len(set(texts)) / len(texts),
        "in_training_share": sum(r["in_training_data"] for r in records) / len(records),
    }


SAMPLE_ORDERS = ("energy", "count", "chain")  # how a list of string samples can be shown


def distinct_records(records: list[dict], higher_is_better: bool = False, order: str = "energy") -> list[dict]:
    """The samples as a reader wants them: one record per distinct text, best first, with a count.

    Args:
        records: as :func:`string_records` gives them.
        higher_is_better: the direction of the trace in ``"energy"`` (False for free energy, lower
            is likelier; True for a log-probability).
        order: ``"energy"`` (best first), ``"count"`` (most repeated first, then best first), or
            ``"chain"`` (every record as given, one per sample, repeats listed).

    Returns:
        copies of records with ``"count"`` added (1 in chain order): for a distinct text, its first
        record with its best ``"energy"`` and the number of samples that had it. Ties keep the
        order of first appearance, so the same samples always read the same way.
    """
    if order not in SAMPLE_ORDERS:
        raise ValueError(f"order must be one of {', '.join(SAMPLE_ORDERS)}, got {order!r}")
    if order == "chain":
        return [{**r, "count": 1} for r in records]
    best = max if higher_is_better else min
    distinct: dict[str, dict] = {}
    for r in records:
        seen = distinct.get(r["text"])
        if seen is None:
            distinct[r["text"]] = {**r, "count": 1}
        else:
            # Repeats of a text have the same energy up to float rounding (the trace is computed per chain).
            seen["count"] += 1
            seen["energy"] = best(seen["energy"], r["energy"])
    sign = -1 if higher_is_better else 1

    def key(r: dict) -> tuple:
        worth = (math.isnan(r["energy"]), sign * r["energy"])  # a NaN (no value) goes last, not anywhere
        return (-r["count"], *worth) if order == "count" else worth

    return sorted(distinct.values(), key=key)


# ---- yield: new, plausible, distinct samples ------------------------------------------------------

START, END = "\x02", "\x03"  # marks around a string for the n-gram model (never in a corpus string)


class CharNGram:
    """A character n-gram model with add-``k`` smoothing, fitted on a set of strings: the yardstick
    of how plausible a generated string looks, independent of the model that generated it.

    A string is scored by its mean log-probability per character, the end mark included, so that
    short and long strings compare fairly.
    """

    def __init__(self, n: int = 3, k: float = 0.1):
        if n < 1 or k <= 0:
            raise ValueError(f"n must be >= 1 and k > 0, got n={n}, k={k}")
        self.n, self.k = n, k

    def _events(self, text: str):
        padded = START * (self.n - 1) + text + END
        return ((padded[i : i + self.n - 1], padded[i + self.n - 1]) for i in range(len(text) + 1))

    def fit(self, texts) -> CharNGram:
        self.pairs: dict[tuple[str, str], int] = {}
        self.contexts: dict[str, int] = {}
        alphabet = {END}
        for text in texts:
            alphabet.update(text)
            for context, char in self._events(text):
                self.pairs[context, char] = self.pairs.get((context, char), 0) + 1
                self.contexts[context] = self.contexts.get(context, 0) + 1
        self.size = len(alphabet)  # the characters a string can continue with, and its end
        return self

    def log_prob(self, context: str, char: str) -> float:
        """``log p(char | the n - 1 characters before it)``; over the alphabet and the end mark these sum to 1."""
        return math.log(
            (self.pairs.get((context, char), 0) + self.k) / (self.contexts.get(context, 0) + self.k * self.size)
        )

    def score(self, text: str) -> float:
        """Mean log-probability per character of ``text`` (its end included)."""
        return sum(self.log_prob(c, x) for c, x in self._events(text)) / (len(text) + 1)


def yield_measure(records: list[dict], ngram: CharNGram, heldout: list[str], chain_sweeps: int, seconds: float) -> dict:
    """How many useful strings a run gave: distinct samples that are not in the training data and
    score, under ``ngram`` (fitted on the training strings), at least as well as the median held-out
    string. Per 1,000 chain-sweeps (one Gibbs sweep of one chain; a replica-exchange step of R
    replicas counts R) and per second of sampling."""
    threshold = float(torch.tensor([ngram.score(t) for t in heldout]).median()) if heldout else float("nan")
    new = {r["text"] for r in records if r["text"] and not r["in_training_data"]}
    good = sum(ngram.score(t) >= threshold for t in new)
    return {
        "yield": good,
        "new_distinct": len(new),
        "threshold": threshold,
        "per_1000_chain_sweeps": 1000 * good / chain_sweeps if chain_sweeps else float("nan"),
        "per_second": good / seconds if seconds > 0 else float("nan"),
    }

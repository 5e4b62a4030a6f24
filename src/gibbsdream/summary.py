"""Turning chains of string states into records and summary figures."""

from __future__ import annotations

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

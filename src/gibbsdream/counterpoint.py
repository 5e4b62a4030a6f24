"""How a four-part harmonisation follows the rules of chorale writing, measured on voice x time
grids (``(4, T)`` MIDI pitches, soprano first, 0 = silence; see :mod:`gibbsdream.data.chorales`).

The same measures are taken of Bach's own chorales and of the model's, so each rate reads against
Bach's (who breaks the rules too, now and then):

- **parallel fifths and octaves** (:func:`parallels`): at each change of chord (a column that
  differs from the one before), a pair of voices that both move, in the same direction, from a
  perfect fifth to a perfect fifth or from an octave (or unison) to an octave (or unison), counted
  modulo the octave; the rate is per pair of voices that both move;
- **voice crossings** (:func:`crossings`): columns where a voice sounds below the voice under it
  (soprano below alto, alto below tenor, tenor below bass), per column and neighbouring pair where
  both sound;
- **out-of-key notes** (:func:`out_of_key`): note onsets whose pitch class is outside the scale of
  the chorale's key, the key estimated by music21 (Krumhansl-Schmuckler), a minor key's scale with
  its raised sixth and seventh;
- **out of range** (:func:`out_of_range`): sounding columns of a voice outside a range (by default
  the lowest to the highest pitch that voice has in Bach's training chorales).

:func:`rule_rates` takes all four of a list of grids, with bootstrap intervals over the grids.
"""

from __future__ import annotations

import numpy as np

MAJOR_STEPS = (0, 2, 4, 5, 7, 9, 11)
MINOR_STEPS = (0, 2, 3, 5, 7, 8, 9, 10, 11)  # natural minor, with the raised sixth and seventh
NEIGHBOURS = ((0, 1), (1, 2), (2, 3))


def chord_changes(grid: np.ndarray) -> np.ndarray:
    """``(V, T)`` -> ``(V, C)``: the columns that differ from the column before (the first kept)."""
    grid = np.asarray(grid)
    if grid.shape[1] == 0:
        return grid
    keep = np.ones(grid.shape[1], dtype=bool)
    keep[1:] = (grid[:, 1:] != grid[:, :-1]).any(0)
    return grid[:, keep]


def parallels(grid: np.ndarray) -> tuple[int, int]:
    """``(parallel fifths and octaves, pairs of voices that both moved)`` over the chord changes."""
    chords = chord_changes(grid).astype(np.int64)
    found = moving = 0
    V = chords.shape[0]
    for i in range(V):
        for j in range(i + 1, V):
            a0, a1, b0, b1 = chords[i, :-1], chords[i, 1:], chords[j, :-1], chords[j, 1:]
            sounding = (a0 > 0) & (a1 > 0) & (b0 > 0) & (b1 > 0)
            both = sounding & (a0 != a1) & (b0 != b1)
            same_way = np.sign(a1 - a0) == np.sign(b1 - b0)
            before, after = (a0 - b0) % 12, (a1 - b1) % 12
            perfect = ((before == 7) & (after == 7)) | ((before == 0) & (after == 0))
            found += int((both & same_way & perfect).sum())
            moving += int(both.sum())
    return found, moving


def crossings(grid: np.ndarray) -> tuple[int, int]:
    """``(columns where a voice is below the voice under it, neighbouring pairs sounding)``."""
    grid = np.asarray(grid)
    crossed = pairs = 0
    for upper, lower in NEIGHBOURS:
        if lower >= grid.shape[0]:
            continue
        sounding = (grid[upper] > 0) & (grid[lower] > 0)
        crossed += int((sounding & (grid[upper] < grid[lower])).sum())
        pairs += int(sounding.sum())
    return crossed, pairs


def onsets(grid: np.ndarray) -> np.ndarray:
    """``(V, T)`` bool: where a note starts (a sounding column whose pitch differs from the one before)."""
    grid = np.asarray(grid)
    start = grid > 0
    start[:, 1:] &= grid[:, 1:] != grid[:, :-1]
    return start


def estimate_key(grid: np.ndarray) -> tuple[int, str]:
    """``(tonic pitch class, "major" or "minor")`` of a grid, by music21's Krumhansl-Schmuckler
    analysis of its notes weighted by duration."""
    from music21 import note, stream  # only where keys are estimated

    # one column lasts one quarter here: the analysis weighs pitch classes by their share of the
    # time, which the unit does not change
    part = stream.Stream()
    grid = np.asarray(grid)
    for voice in grid:
        column = 0
        while column < len(voice):
            end = column + 1
            while end < len(voice) and voice[end] == voice[column]:
                end += 1
            if voice[column] > 0:
                n = note.Note(int(voice[column]))
                n.quarterLength = end - column
                part.insert(column, n)
            column = end
    key = part.analyze("key")
    return key.tonic.pitchClass, key.mode


def out_of_key(grid: np.ndarray, key: tuple[int, str] | None = None) -> tuple[int, int]:
    """``(note onsets outside the key's scale, note onsets)``; ``key`` as :func:`estimate_key`'s
    (estimated from the grid when None)."""
    grid = np.asarray(grid)
    tonic, mode = estimate_key(grid) if key is None else key
    steps = MAJOR_STEPS if mode == "major" else MINOR_STEPS
    scale = np.zeros(12, dtype=bool)
    scale[[(tonic + s) % 12 for s in steps]] = True
    starts = onsets(grid)
    classes = grid[starts].astype(np.int64) % 12
    return int((~scale[classes]).sum()), int(starts.sum())


def voice_ranges(grids) -> list[tuple[int, int]]:
    """The lowest and highest sounding pitch of each voice over grids ``(V, T)``: ``[(low, high)] * V``."""
    grids = list(grids)
    ranges = []
    for v in range(np.asarray(grids[0]).shape[0]):
        values = np.concatenate([np.asarray(g)[v][np.asarray(g)[v] > 0] for g in grids])
        ranges.append((int(values.min()), int(values.max())) if len(values) else (0, 0))
    return ranges


def out_of_range(grid: np.ndarray, ranges) -> tuple[int, int]:
    """``(sounding columns outside their voice's range, sounding columns)``."""
    grid = np.asarray(grid)
    outside = sounding = 0
    for voice, (low, high) in zip(grid, ranges):
        on = voice > 0
        outside += int((on & ((voice < low) | (voice > high))).sum())
        sounding += int(on.sum())
    return outside, sounding


def rule_rates(grids, ranges, keys=None, resamples: int = 2000, seed: int = 0) -> dict:
    """Each rule's rate over ``grids`` (counts pooled over them) with a 95% bootstrap interval over
    the grids: ``{rule: {"rate", "ci95", "count", "of"}}`` for ``parallel_fifths_octaves``,
    ``voice_crossings``, ``out_of_key`` and ``out_of_range``. ``keys``: one ``(tonic, mode)`` per
    grid (estimated when None), so that a harmonisation can be judged in its melody's key."""
    grids = [np.asarray(g) for g in grids]
    if not grids:
        raise ValueError("no grids to judge")
    keys = [None] * len(grids) if keys is None else list(keys)
    counts = {
        "parallel_fifths_octaves": np.array([parallels(g) for g in grids]),
        "voice_crossings": np.array([crossings(g) for g in grids]),
        "out_of_key": np.array([out_of_key(g, k) for g, k in zip(grids, keys)]),
        "out_of_range": np.array([out_of_range(g, ranges) for g in grids]),
    }
    index = np.random.default_rng(seed).integers(0, len(grids), size=(resamples, len(grids)))
    rates = {}
    for rule, table in counts.items():  # table: (grids, 2) = (count, of)
        found, total = table[:, 0], table[:, 1]
        resampled = found[index].sum(1) / np.maximum(total[index].sum(1), 1)
        low, high = np.percentile(resampled, [2.5, 97.5])
        rates[rule] = {
            "rate": float(found.sum() / max(total.sum(), 1)),
            "ci95": [float(low), float(high)],
            "count": int(found.sum()),
            "of": int(total.sum()),
        }
    return rates

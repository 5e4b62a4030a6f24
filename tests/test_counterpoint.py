"""The rules of chorale writing, measured: hand-made cases with known counts, and Bach's chorales
against random voices (the measures must tell them apart)."""

import numpy as np
import pytest

from gibbsdream.counterpoint import (
    chord_changes,
    crossings,
    estimate_key,
    onsets,
    out_of_key,
    out_of_range,
    parallels,
    rule_rates,
    voice_ranges,
)


def grid(*voices) -> np.ndarray:
    return np.array(voices, dtype=np.int16)


def test_parallel_octaves_and_fifths_are_found_and_other_motion_is_not():
    # soprano and bass an octave apart move up together: a parallel octave; alto and tenor hold
    octaves = grid([72, 74], [67, 67], [64, 64], [60, 62])
    assert parallels(octaves) == (1, 1)
    # the same octaves in contrary motion (72 -> 74 against 60 -> 50: 12 -> 0 mod 12 ... 24): not parallel
    contrary = grid([72, 74], [67, 67], [64, 64], [60, 50])
    assert parallels(contrary) == (0, 1)
    # soprano and alto a fifth apart move down a step together: a parallel fifth
    fifths = grid([74, 72], [67, 65], [59, 59], [55, 55])
    assert parallels(fifths) == (1, 1)
    # a fifth to a fifth where one voice holds is no motion of both: not counted at all
    oblique = grid([74, 74], [67, 67], [59, 60], [55, 55])
    assert parallels(oblique) == (0, 0)
    # held columns are one chord: the change is counted once
    assert parallels(np.repeat(octaves, 3, axis=1)) == (1, 1)
    assert chord_changes(np.repeat(octaves, 3, axis=1)).shape == (4, 2)


def test_crossings_onsets_and_ranges():
    crossed = grid([67, 64, 67], [65, 66, 65], [60, 60, 0], [48, 48, 48])
    assert crossings(crossed) == (1, 3 + 2 + 2)  # the alto above the soprano once; the tenor rests once
    assert onsets(grid([60, 60, 62, 0, 62])).tolist() == [[True, False, True, False, True]]
    assert out_of_range(grid([60, 84], [0, 50]), [(60, 81), (53, 74)]) == (2, 3)


def test_keys_and_notes_outside_them():
    c_major = grid([60, 62, 64, 65, 67, 69, 71, 72, 67, 60])  # a C major scale and a cadence
    assert estimate_key(c_major) == (0, "major")
    a_minor = grid([69, 71, 72, 74, 76, 77, 80, 81, 76, 69])  # A minor with its raised seventh (G#)
    assert estimate_key(a_minor) == (9, "minor")
    assert out_of_key(a_minor, (9, "minor")) == (0, 10)  # G# belongs to A minor
    with_f_sharp = grid([60, 62, 64, 66, 67, 72])
    assert out_of_key(with_f_sharp, (0, "major")) == (1, 6)


@pytest.fixture(scope="module")
def bach():
    pytest.importorskip("music21")
    from music21 import corpus

    from gibbsdream.data.chorales import satb_parts, score_grid

    return [score_grid(satb_parts(corpus.parse(f"bach/{n}"))) for n in ("bwv269", "bwv347", "bwv86.6", "bwv267")]


def test_bach_breaks_the_rules_far_less_than_random_voices(bach):
    """Bach's chorales against the same chorales with each voice's notes shuffled in time (same
    pitches, same rhythm of changes, no voice leading): every rate must tell them apart."""
    ranges = voice_ranges(bach)
    ours = rule_rates(bach, ranges, seed=1)
    rng = np.random.default_rng(0)
    shuffled = [np.stack([v[rng.permutation(len(v))] for v in g]) for g in bach]
    theirs = rule_rates(shuffled, ranges, keys=[estimate_key(g) for g in bach], seed=1)
    assert ours["parallel_fifths_octaves"]["rate"] < 0.01 < theirs["parallel_fifths_octaves"]["rate"]
    assert ours["voice_crossings"]["rate"] < 0.02 < theirs["voice_crossings"]["rate"]
    assert ours["out_of_range"]["rate"] == 0  # the ranges are Bach's own
    for rule in ours.values():
        low, high = rule["ci95"]
        assert low <= rule["rate"] <= high and low >= 0 and high <= 1
    # out-of-key notes: Bach modulates and colours now and then; inner voices a semitone off do not
    assert ours["out_of_key"]["rate"] < 0.1
    off = [np.where(np.arange(4)[:, None] % 3 != 0, g + (g > 0), g) for g in bach]  # alto and tenor up a semitone
    wrong = rule_rates(off, ranges, keys=[estimate_key(g) for g in bach], seed=1)
    assert wrong["out_of_key"]["rate"] > 0.3
    with pytest.raises(ValueError):
        rule_rates([], ranges)

"""builtin:chorales and scores in and out: grids from music21 parts, the split by catalogue number,
the cache, windows and transposition, the pitch codec, MIDI and MusicXML, and bad input."""

import collections
from pathlib import Path

import numpy as np
import pytest

from gibbsdream import UsageError

music21 = pytest.importorskip("music21")  # the music extra (the test extra installs it)
pytest.importorskip("mido")

from music21 import chord, corpus, note, stream  # noqa: E402

from gibbsdream.data import chorales  # noqa: E402
from gibbsdream.data.chorales import (  # noqa: E402
    ChoraleCodec,
    catalogue_of,
    grid_to_midi,
    part_grid,
    pitch_name,
    read_score,
    satb_parts,
    split_of,
    transpositions,
    windows,
)


def part(*events, name=None) -> stream.Part:
    """A part from ``(kind, value, quarter length)``: ("n", midi), ("r", None), ("c", [midi, ...])."""
    p = stream.Part()
    if name:
        p.partName = name
    for kind, value, length in events:
        if kind == "n":
            element = note.Note(value)
        elif kind == "c":
            element = chord.Chord(value)
        else:
            element = note.Rest()
        element.quarterLength = length
        p.append(element)
    return p


def test_a_part_becomes_pitches_on_the_16th_grid():
    # a quarter C4, an eighth rest, an eighth chord E4+G4, a dotted quarter D4, a 16th F4
    p = part(("n", 60, 1), ("r", None, 0.5), ("c", [64, 67], 0.5), ("n", 62, 1.5), ("n", 65, 0.25))
    expected = [60] * 4 + [0] * 2 + [67] * 2 + [62] * 6 + [65]
    assert part_grid(p).tolist() == expected
    assert part_grid(p, top=False)[6:8].tolist() == [64, 64]  # a lower voice keeps a chord's bottom note
    assert part_grid(p, 20).tolist() == expected + [0] * 5  # padded with silence


def test_the_four_voices_are_found_by_name_or_as_the_only_four_parts():
    named = stream.Score(
        [part(("n", 60, 1), name=n) for n in ("Trumpet", "Soprano Oboe 1", "Alto", "Tenor Viola", "Bass Continuo")]
    )
    assert [p.partName for p in satb_parts(named)] == ["Soprano Oboe 1", "Alto", "Tenor Viola", "Bass Continuo"]
    anonymous = stream.Score([part(("n", 60, 1)) for _ in range(4)])
    assert len(satb_parts(anonymous)) == 4
    assert satb_parts(stream.Score([part(("n", 60, 1)) for _ in range(3)])) is None


def test_the_split_is_by_catalogue_number_and_fixed():
    assert catalogue_of("bach/bwv153.5") == "153" and catalogue_of("bwv248.12-2") == "248"
    assert catalogue_of("bwv269") == "269" and catalogue_of("mystery") == "mystery"
    names = [str(n) for n in corpus.chorales.Iterator(returnType="filename")]
    sides = {}
    for name in names:
        side = split_of(catalogue_of(name))
        assert sides.setdefault(catalogue_of(name), side) == side  # one cantata, one side
    counts = collections.Counter(split_of(catalogue_of(n)) for n in names)
    assert 0.05 < counts["test"] / len(names) < 0.15 and 0.05 < counts["validation"] / len(names) < 0.15
    assert split_of("153") == split_of("153") and {split_of(str(i)) for i in range(200)} == {
        "train",
        "validation",
        "test",
    }


def test_a_real_chorale_reads_as_four_voices_in_order():
    parts = satb_parts(corpus.parse("bach/bwv269"))
    grid = chorales.score_grid(parts)
    assert grid.shape[0] == 4 and grid.dtype == np.int16
    assert grid[:, 0].tolist() == [67, 62, 59, 43]  # G4, D4, B3, G2: the opening G major chord
    sounding = (grid > 0).all(0)
    assert (grid[0][sounding] >= grid[1][sounding]).mean() > 0.99  # soprano above alto, nearly always
    assert (grid[2][sounding] >= grid[3][sounding]).mean() > 0.99  # tenor above bass (or in unison)


@pytest.fixture
def three_chorales(monkeypatch, tmp_path):
    """The corpus cut to three chorales and the cache in a fresh folder."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    few = ["bach/bwv269", "bach/bwv347", "bach/bwv153.1"]
    monkeypatch.setattr(corpus.chorales, "Iterator", lambda returnType="filename": iter(few))
    return few


def test_the_chorales_are_parsed_once_then_read_from_the_cache(three_chorales, monkeypatch, capsys):
    first = chorales.load_chorales()
    assert [c.name for c in first] == ["bwv269", "bwv347", "bwv153.1"] and first[2].catalogue == "153"
    path = chorales.cache_path(music21.__version__)
    assert path.exists()

    def no_parsing(*args, **kwargs):
        raise AssertionError("parsed again although the cache holds the chorales")

    monkeypatch.setattr(corpus, "parse", no_parsing)
    again = chorales.load_chorales()
    assert [c.name for c in again] == [c.name for c in first]
    assert all(np.array_equal(a.pitches, b.pitches) for a, b in zip(first, again))
    assert [c.time_signature for c in again] == [c.time_signature for c in first]


def test_a_damaged_cache_is_parsed_again_and_replaced(three_chorales, capsys):
    good = chorales.load_chorales()
    path = chorales.cache_path(music21.__version__)
    payload = bytearray(path.read_bytes())
    payload[-5] ^= 0xFF  # one flipped byte among the pitches: the checksum no longer matches
    path.write_bytes(bytes(payload))
    again = chorales.load_chorales()
    assert "the chorale cache" in capsys.readouterr().err
    assert all(np.array_equal(a.pitches, b.pitches) for a, b in zip(good, again))
    assert chorales._read_cache(path) is not None  # rewritten whole


def test_windows_cover_the_chorale_and_transpositions_stay_in_range():
    grid = np.arange(1, 4 * 10 + 1, dtype=np.int16).reshape(4, 10) + 50
    w = windows(grid, 4, 3)
    assert w.shape == (3, 4, 4) and w[-1, :, -1].tolist() == grid[:, -1].tolist()  # the last ends at the end
    assert [int(x[0, 0]) for x in w] == [51, 54, 57]
    assert [int(x[0, 0]) for x in windows(grid, 4, 4)] == [51, 55, 57]  # one more, to reach the end
    short = windows(grid[:, :3], 5, 1)
    assert short.shape == (1, 4, 5) and (short[0, :, 3:] == 0).all()
    with pytest.raises(ValueError):
        windows(grid, 0, 1)
    g = np.array([[[60, 0, 62]], [[70, 72, 0]]], dtype=np.int16)  # two one-voice grids
    moved = transpositions(g, 58, 73, [0, 1, -2])  # every shift keeps both within 58..73
    assert moved.shape[0] == 2 + 2 + 2
    assert moved[2].tolist() == [[61, 0, 63]] and (moved[moved > 0] >= 58).all() and (moved <= 73).all()
    down = transpositions(g, 60, 72, [-1])  # 60 - 1 leaves the range: only the second grid moves
    assert down.tolist() == [[[69, 71, 0]]]
    assert transpositions(g, 60, 72, [1]).tolist() == [[[61, 0, 63]]]  # 72 + 1 leaves it


def test_the_codec_maps_pitches_to_categories_and_names_what_does_not_fit():
    codec = ChoraleCodec(36, 81)
    assert codec.num_categories == 47  # 46 pitches (Coconet's range) and silence
    grid = np.array([[60, 0, 81], [36, 40, 0], [50, 50, 50], [0, 0, 0]], dtype=np.int16)
    categories = codec.encode(grid)
    assert categories[0].tolist() == [25, 0, 46] and categories[1].tolist() == [1, 5, 0]
    assert np.array_equal(codec.decode(categories), grid)
    assert ChoraleCodec.from_dict(codec.to_dict()) == codec
    high = grid.copy()
    high[2, 1] = 84
    with pytest.raises(UsageError, match=r"pitch C6 \(the tenor at 16th 2\) is outside the model's range C2 to A5"):
        codec.encode(high)
    with pytest.raises(UsageError, match="MIDI pitches"):
        ChoraleCodec(50, 40)
    assert pitch_name(60) == "C4" and pitch_name(69) == "A4" and pitch_name(36) == "C2"


def test_a_grid_written_as_midi_reads_back_the_same(tmp_path):
    grid = np.array(
        [
            [72, 72, 72, 72, 74, 74, 0, 0, 76, 76, 76, 76],
            [67, 67, 67, 67, 67, 67, 67, 67, 67, 67, 0, 0],
            [64, 64, 62, 62, 60, 60, 60, 60, 59, 59, 59, 59],
            [48, 48, 48, 48, 43, 43, 43, 43, 48, 48, 48, 48],
        ],
        dtype=np.int16,
    )
    path = grid_to_midi(grid, tmp_path / "four.mid")
    import mido

    song = mido.MidiFile(path)
    assert len(song.tracks) == 4 and song.tracks[0].name == "soprano"
    # held neighbours are one note: the soprano sounds three notes, the bass three
    assert (
        sum(m.type == "note_on" for m in song.tracks[0]) == 3 and sum(m.type == "note_on" for m in song.tracks[3]) == 3
    )
    assert np.array_equal(read_score(path)[:, :12], grid)


def test_a_melody_in_musicxml_reads_as_one_voice(tmp_path):
    melody = stream.Score([part(("n", 67, 1), ("n", 69, 0.5), ("r", None, 0.5), ("n", 71, 2))])
    path = melody.write("musicxml", fp=tmp_path / "melody.musicxml")
    grid = read_score(path)
    assert grid.shape == (1, 16) and grid[0].tolist() == [67] * 4 + [69] * 2 + [0] * 2 + [71] * 8


@pytest.mark.parametrize(
    "name, content, words",
    [
        ("tune.txt", b"C D E", "is not a MIDI or MusicXML file by its name"),
        ("noise.mid", b"this is not a midi file at all", "is not a MIDI file music21 can read"),
        ("noise.musicxml", b"<not-a-score/>", "is not a MusicXML file music21 can read"),
    ],
)
def test_files_that_are_not_scores_are_refused_in_one_line(tmp_path, name, content, words):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(UsageError, match=words) as caught:
        read_score(path)
    assert "\n" not in str(caught.value)


def test_an_empty_melody_a_missing_file_and_too_many_voices_are_refused(tmp_path):
    empty = grid_to_midi(np.zeros((1, 8), dtype=np.int16), tmp_path / "empty.mid")
    with pytest.raises(UsageError, match="holds no note"):
        read_score(empty)
    with pytest.raises(UsageError, match="does not exist"):
        read_score(tmp_path / "nowhere.mid")
    five = grid_to_midi(np.full((5, 8), 60, dtype=np.int16) + np.arange(5, dtype=np.int16)[:, None], tmp_path / "5.mid")
    with pytest.raises(UsageError, match="has 5 parts with notes; a chorale has at most 4"):
        read_score(five)


def test_without_music21_one_line_says_what_to_install(monkeypatch, tmp_path):
    import sys

    path = grid_to_midi(np.full((1, 4), 60, dtype=np.int16), tmp_path / "one.mid")
    monkeypatch.setitem(sys.modules, "music21", None)  # as if not installed: importing it fails
    with pytest.raises(UsageError, match=r"need music21; install it with pip install music21"):
        read_score(path)
    with pytest.raises(UsageError, match="need music21"):
        chorales.load_chorales()


def test_a_grid_becomes_a_piano_roll_with_each_voice_in_its_colour():
    from gibbsdream.viz import ROLL_BACKGROUND, ROLL_C_LINE, VOICE_COLOURS, piano_roll

    grid = np.array([[72, 72, 0], [67, 65, 65], [60, 60, 60], [48, 43, 43]], dtype=np.int16)
    known = np.zeros_like(grid, dtype=bool)
    known[0] = True  # the soprano was given
    roll = piano_roll(grid, 43, 72, known=known, cell=(2, 1))
    assert roll.shape == (72 - 43 + 1, 3 * 2, 3) and roll.dtype == np.uint8
    assert tuple(roll[0, 0]) == tuple(np.array(VOICE_COLOURS[0]) // 3)  # the given soprano: darkened
    assert tuple(roll[72 - 67, 0]) == VOICE_COLOURS[1] and tuple(roll[72 - 43, 2]) == VOICE_COLOURS[3]
    assert tuple(roll[0, 4]) == ROLL_C_LINE and tuple(roll[1, 4]) == ROLL_BACKGROUND  # the soprano rests last
    with pytest.raises(UsageError, match="1 to 4 voices"):
        piano_roll(np.zeros((5, 3), dtype=np.int16), 40, 80)


def test_midi_renders_to_a_wav_or_says_what_to_install(tmp_path, monkeypatch):
    import shutil
    import wave

    midi = grid_to_midi(np.array([[72] * 8 + [74] * 8, [60] * 16], dtype=np.int16), tmp_path / "two.mid")
    if shutil.which("fluidsynth") and any(Path(p).is_file() for p in chorales.SOUNDFONTS):
        out = chorales.render_wav(midi, tmp_path / "two.wav")
        with wave.open(str(out)) as w:
            seconds = w.getnframes() / w.getframerate()
            assert w.getframerate() == chorales.AUDIO_RATE and w.getnchannels() == 2
        assert seconds >= chorales.grid_seconds(np.zeros((2, 16))) * 0.9  # 16 16ths at 80 bpm: 3 s, and the tail
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(UsageError, match="rendering audio needs FluidSynth; install it"):
        chorales.render_wav(midi, tmp_path / "none.wav")
    assert not (tmp_path / "none.wav").exists()
    with pytest.raises(UsageError, match="soundfont .* does not exist"):
        chorales.find_soundfont(tmp_path / "missing.sf2")


def test_scores_too_large_or_too_long_are_refused_before_they_cost_memory(tmp_path, monkeypatch):
    big = tmp_path / "big.mid"
    big.write_bytes(b"MThd" + bytes(64))
    monkeypatch.setattr(chorales, "MAX_SCORE_BYTES", 32)
    with pytest.raises(UsageError, match=r"big.mid is 0.0 MB, more than the 0 MB a score may be"):
        read_score(big)
    monkeypatch.undo()
    # one note a million quarters in: refused from the MIDI's event times, before music21 lays out
    # 250,000 bars (it took minutes) and before a grid of 4 million 16ths per voice
    import mido

    song = mido.MidiFile(ticks_per_beat=1)
    song.tracks.append(
        mido.MidiTrack(
            [mido.Message("note_on", note=60, velocity=80, time=1_000_000), mido.Message("note_off", note=60, time=1)]
        )
    )
    song.save(str(tmp_path / "far.mid"))
    with pytest.raises(UsageError, match=r"the score lasts 4,000,004 16th notes, more than the 65,536 read"):
        read_score(tmp_path / "far.mid")
    # a long part of a MusicXML file is caught when its grid is laid out
    with pytest.raises(UsageError, match="more than the 65,536 read"):
        part_grid(part(("n", 60, 20_000)))

"""``builtin:chorales``: Bach's four-part chorales from music21's corpus, as voice x time grids; and
scores in and out (MIDI, MusicXML) for melodies to harmonise.

A chorale is a grid ``(4, T)`` of MIDI pitches, soprano, alto, tenor and bass from top to bottom,
one column per 16th note, 0 where a voice is silent: Coconet's representation (Huang et al. 2017),
with one categorical per voice and time step over the pitch range and silence. A held note fills
its columns with its pitch, so the grid does not tell a held note from a repeated one; written back
as MIDI, equal neighbours are one note.

Where the chorales come from (:func:`load_chorales`): the chorales of music21's corpus
(``music21.corpus.chorales.Iterator``, 371 in music21 9 and 10), each reduced to the parts named
Soprano, Alto, Tenor and Bass (or its only four parts); a chorale without four such voices is
left out and counted. Parsing them takes about 15 s, so the grids are cached once per music21
version (``$XDG_CACHE_HOME/gibbsdream/chorales``, see :func:`gibbsdream.files.user_cache_folder`);
a damaged cache is parsed again and replaced.

The split (:func:`split_of`) is by catalogue number, the BWV number without its movement
(``bwv153.5`` -> ``153``), so the chorales of one cantata, often settings of one tune, fall on the
same side; which side comes from a hash of the number (10% test, 10% validation), not from the
order of the corpus or the version of music21.

music21 is an optional extra (``pip install -e ".[music]"``); without it, one line says so.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UsageError
from ..files import atomic_write_bytes, user_cache_folder
from .captions import notice

VOICES = ("soprano", "alto", "tenor", "bass")
STEPS_PER_QUARTER = 4  # a 16th-note grid
SILENCE = 0  # the grid's value where a voice is silent (MIDI pitch 0 is never sung)
SCORE_SUFFIXES = {".mid": "MIDI", ".midi": "MIDI", ".xml": "MusicXML", ".musicxml": "MusicXML", ".mxl": "MusicXML"}
TEST_SHARE = VALIDATION_SHARE = 0.1
# Hostile or mistaken files are refused before they cost memory: a score file above this size, and a
# score lasting longer than this many 16ths (4,096 bars of 4/4; Bach's longest chorale has 772).
MAX_SCORE_BYTES = 16 * 2**20
MAX_SCORE_STEPS = 2**16
CACHE_FORMAT = "gibbsdream-chorales-1"  # bump when the grids change for the same music21 version
_CATALOGUE = re.compile(r"bwv\s*(\d+)", re.IGNORECASE)


@dataclass(frozen=True)
class Chorale:
    """One chorale: ``name`` (``bwv153.5``), ``catalogue`` (``153``, the unit of the split),
    ``pitches`` ``(4, T)`` int16 MIDI pitches (0 = silence) and ``time_signature`` (``4/4``)."""

    name: str
    catalogue: str
    pitches: np.ndarray
    time_signature: str


def _music21():
    try:
        import music21  # an optional extra: only where scores are read or the chorales loaded
    except ImportError:
        raise UsageError(
            "reading scores and builtin:chorales need music21; install it with pip install music21, or "
            'pip install -e ".[music]" in a checkout of gibbsdream'
        ) from None
    return music21


# ---- scores -> grids ----------------------------------------------------------------------------


def _part_events(part, top: bool) -> list[tuple[int, int, int]]:
    """``(start, end, pitch)`` on the 16th grid of a part's notes (chords: top or bottom pitch)."""
    events = []
    for element in part.flatten().notesAndRests:
        start = round(float(element.offset) * STEPS_PER_QUARTER)
        end = round((float(element.offset) + float(element.quarterLength)) * STEPS_PER_QUARTER)
        if end <= start or element.isRest:
            continue
        pitches = [p.midi for p in element.pitches]
        events.append((start, end, max(pitches) if top else min(pitches)))
    return events


def _check_length(length: int) -> None:
    """Refuse a score longer than :data:`MAX_SCORE_STEPS` 16ths before its grid is made."""
    if length > MAX_SCORE_STEPS:
        raise UsageError(
            f"the score lasts {length:,} 16th notes, more than the {MAX_SCORE_STEPS:,} read; "
            "give a shorter piece or a part of it"
        )


def _events_grid(events, length: int) -> np.ndarray:
    _check_length(length)
    grid = np.zeros(length, dtype=np.int16)
    for start, end, pitch in events:
        grid[start:end] = pitch  # a later note that overlaps an earlier one wins (monophonic parts)
    return grid


def _end(events) -> int:
    return max((end for _, end, _ in events), default=0)


def part_grid(part, length: int | None = None, *, top: bool = True) -> np.ndarray:
    """One music21 part -> ``(T,)`` int16 pitches on the 16th grid (0 where it rests).

    Onsets and ends are rounded to the nearest 16th (triplets and grace notes land on the grid or
    vanish); a chord gives its highest pitch (``top``) or its lowest. ``length`` pads or cuts to T
    columns (default: the part's own end)."""
    events = _part_events(part, top)
    return _events_grid(events, _end(events) if length is None else length)


def score_grid(parts) -> np.ndarray:
    """Parts, top voice first -> ``(V, T)`` int16 pitches, all padded to the longest part."""
    # upper voices keep a chord's top note, lower ones its bottom note
    events = [_part_events(p, top=i < len(parts) / 2) for i, p in enumerate(parts)]
    length = max((_end(e) for e in events), default=0)
    return np.stack([_events_grid(e, length) for e in events])


def satb_parts(score) -> list | None:
    """The soprano, alto, tenor and bass parts of a score, by name (``Soprano Oboe 1`` counts as
    the soprano), or its only four parts; None when it has no such four."""
    parts = list(score.parts)
    chosen = []
    for voice in VOICES:
        named = [p for p in parts if (p.partName or "").strip().lower().startswith(voice)]
        if len(named) != 1:
            break
        chosen.append(named[0])
    if len(chosen) == 4:
        return chosen
    return parts if len(parts) == 4 else None


def catalogue_of(name: str) -> str:
    """``bach/bwv153.5`` -> ``153``: the BWV number without its movement (the name when it has none)."""
    found = _CATALOGUE.search(name)
    return found.group(1) if found else name


def split_of(catalogue: str) -> str:
    """``"train"``, ``"validation"`` or ``"test"`` for a catalogue number, by a hash of it."""
    u = int.from_bytes(hashlib.sha256(f"chorale-split:{catalogue}".encode()).digest()[:8], "big") / 2**64
    return "test" if u < TEST_SHARE else "validation" if u < TEST_SHARE + VALIDATION_SHARE else "train"


# ---- the corpus ---------------------------------------------------------------------------------


def _parse_corpus(music21) -> tuple[list[Chorale], int]:
    from music21 import corpus

    chorales, skipped = [], 0
    for path in corpus.chorales.Iterator(returnType="filename"):
        score = corpus.parse(path)
        parts = satb_parts(score)
        if parts is None:
            skipped += 1
            continue
        pitches = score_grid(parts)
        if not (pitches > 0).any():
            skipped += 1
            continue
        signatures = score.recurse().getElementsByClass("TimeSignature")
        # "bach/bwv153.1" -> "bwv153.1" (its ".1" is the movement, not a file suffix)
        name = re.sub(r"\.(mxl|xml|musicxml|krn|mid)$", "", str(path).replace("\\", "/").rsplit("/", 1)[-1])
        chorales.append(Chorale(name, catalogue_of(name), pitches, signatures[0].ratioString if signatures else ""))
    return chorales, skipped


def cache_path(music21_version: str) -> Path:
    return user_cache_folder("chorales") / f"chorales-{CACHE_FORMAT}-music21-{music21_version}.safetensors"


def _write_cache(path: Path, chorales: list[Chorale], skipped: int) -> None:
    from safetensors.numpy import save  # only where the cache is written

    pitches = np.concatenate([c.pitches for c in chorales], 1) if chorales else np.zeros((4, 0), np.int16)
    lengths = np.array([c.pitches.shape[1] for c in chorales], dtype=np.int64)
    meta = {
        "format": CACHE_FORMAT,
        "names": json.dumps([c.name for c in chorales]),
        "time_signatures": json.dumps([c.time_signature for c in chorales]),
        "skipped": str(skipped),
        "pitches_sha256": hashlib.sha256(pitches.tobytes() + lengths.tobytes()).hexdigest(),
    }
    try:
        atomic_write_bytes(path, save({"pitches": pitches, "lengths": lengths}, metadata=meta))
    except OSError as err:
        notice(f"cannot keep the parsed chorales in {path.parent} ({err.strerror or err}); they are parsed each time")


def _read_cache(path: Path) -> tuple[list[Chorale], int] | None:
    from safetensors import safe_open  # only where the cache is read

    try:
        with safe_open(str(path), "np") as f:
            meta = f.metadata() or {}
            pitches, lengths = f.get_tensor("pitches"), f.get_tensor("lengths")
        names, signatures = json.loads(meta["names"]), json.loads(meta["time_signatures"])
        ok = (
            meta.get("format") == CACHE_FORMAT
            and pitches.dtype == np.int16
            and pitches.ndim == 2
            and pitches.shape[0] == 4
            and lengths.shape == (len(names),) == (len(signatures),)
            and int(lengths.sum()) == pitches.shape[1]
            and hashlib.sha256(pitches.tobytes() + lengths.tobytes()).hexdigest() == meta.get("pitches_sha256")
        )
        skipped = int(meta["skipped"])
    except Exception:  # any damage at all (truncated, bad JSON, a missing key) means: parse again
        ok = False
    if not ok:
        notice(f"the chorale cache {path} is damaged; parsing the chorales again")
        return None
    ends = np.cumsum(lengths)
    chorales = [
        Chorale(name, catalogue_of(name), pitches[:, end - length : end].copy(), signature)
        for name, signature, length, end in zip(names, signatures, lengths.tolist(), ends.tolist())
    ]
    return chorales, skipped


def load_chorales() -> list[Chorale]:
    """Every four-voice chorale of music21's corpus, from the cache when it holds them."""
    music21 = _music21()
    path = cache_path(music21.__version__)
    cached = _read_cache(path) if path.exists() else None
    if cached is None:
        cached = _parse_corpus(music21)
        _write_cache(path, *cached)
    chorales, _ = cached
    if not chorales:
        raise UsageError(f"music21 {music21.__version__} has no four-voice chorales in its corpus; reinstall music21")
    return chorales


# ---- windows and transposition --------------------------------------------------------------------


def windows(pitches: np.ndarray, length: int, hop: int) -> np.ndarray:
    """``(V, T)`` -> ``(N, V, length)``: windows every ``hop`` columns; the last one ends at the
    chorale's end (a chorale shorter than ``length`` gives one window padded with silence)."""
    if length < 1 or hop < 1:
        raise ValueError(f"length and hop must be >= 1, got {length} and {hop}")
    V, T = pitches.shape
    if length >= T:
        out = np.zeros((1, V, length), dtype=pitches.dtype)
        out[0, :, :T] = pitches
        return out
    starts = list(range(0, T - length + 1, hop))
    if starts[-1] != T - length:
        starts.append(T - length)
    return np.stack([pitches[:, s : s + length] for s in starts])


def transpositions(grids: np.ndarray, low: int, high: int, shifts) -> np.ndarray:
    """Every grid of ``(N, V, T)`` moved by each semitone shift in ``shifts`` whose result stays
    within ``[low, high]`` (silence stays silence): ``(M, V, T)``, the unshifted grids first when
    0 is among the shifts."""
    sounding = grids > 0
    out = []
    for shift in shifts:
        moved = np.where(sounding, grids + shift, 0)
        fits = ((moved >= low) | ~sounding).all((1, 2)) & ((moved <= high) | ~sounding).all((1, 2))
        out.append(moved[fits])
    return np.concatenate(out).astype(grids.dtype) if out else grids[:0]


def pitch_range(grids) -> tuple[int, int]:
    """The lowest and highest sounding pitch over grids (any shape), ``(low, high)``."""
    values = np.concatenate([np.asarray(g)[np.asarray(g) > 0].ravel() for g in grids])
    if not len(values):
        raise UsageError("these grids sound no note")
    return int(values.min()), int(values.max())


# ---- the codec: pitches <-> categories -------------------------------------------------------------


@dataclass(frozen=True)
class ChoraleCodec:
    """Pitches in ``[low, high]`` and silence <-> categories: 0 is silence, pitch ``p`` is
    ``p - low + 1``; ``num_categories = high - low + 2``."""

    low: int
    high: int

    def __post_init__(self):
        if not (isinstance(self.low, int) and isinstance(self.high, int) and 1 <= self.low <= self.high <= 127):
            raise UsageError(f"a chorale codec needs MIDI pitches 1 <= low <= high <= 127, got {self.low}, {self.high}")

    @property
    def num_categories(self) -> int:
        return self.high - self.low + 2

    def encode(self, pitches: np.ndarray) -> np.ndarray:
        """``(..., V, T)`` MIDI pitches (0 = silence) -> categories; UsageError naming the first
        pitch out of range, its voice and its 16th."""
        pitches = np.asarray(pitches)
        outside = (pitches > 0) & ((pitches < self.low) | (pitches > self.high))
        if outside.any():
            where = np.argwhere(outside)[0]
            voice, column = int(where[-2]), int(where[-1])
            name = VOICES[voice] if pitches.shape[-2] == len(VOICES) else f"voice {voice + 1}"
            raise UsageError(
                f"pitch {pitch_name(int(pitches[tuple(where)]))} (the {name} at 16th {column + 1}) is outside the "
                f"model's range {pitch_name(self.low)} to {pitch_name(self.high)}; transpose the music into it"
            )
        return np.where(pitches > 0, pitches - self.low + 1, 0).astype(np.int64)

    def decode(self, categories: np.ndarray) -> np.ndarray:
        """Categories -> MIDI pitches (0 = silence), int16."""
        categories = np.asarray(categories)
        return np.where(categories > 0, categories + self.low - 1, 0).astype(np.int16)

    def to_dict(self) -> dict:
        return {"kind": "chorales", "low": self.low, "high": self.high}

    @classmethod
    def from_dict(cls, d: dict) -> ChoraleCodec:
        return cls(int(d["low"]), int(d["high"]))


_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")


def pitch_name(midi: int) -> str:
    """60 -> ``C4`` (scientific pitch notation, middle C = C4)."""
    return f"{_NAMES[midi % 12]}{midi // 12 - 1}"


# ---- scores in and out ------------------------------------------------------------------------------


def read_score(path, max_voices: int = len(VOICES)) -> np.ndarray:
    """A MIDI or MusicXML file -> ``(V, T)`` int16 pitches on the 16th grid, top part first, 0 where
    a part rests. UsageError (one line) for a file that is missing, not MIDI or MusicXML by its
    name or its content, holds no note, or has more than ``max_voices`` parts."""
    path = Path(path)
    kind = SCORE_SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise UsageError(
            f"{path} is not a MIDI or MusicXML file by its name; give a .mid, .midi, .xml, .musicxml or .mxl file"
        )
    if not path.is_file():
        raise UsageError(f"{path} does not exist or is not a file; give a {kind} file")
    size = path.stat().st_size
    if size > MAX_SCORE_BYTES:
        raise UsageError(
            f"{path} is {size / 2**20:.1f} MB, more than the {MAX_SCORE_BYTES // 2**20} MB a score may be; "
            "give a melody or a chorale, not a whole collection"
        )
    if kind == "MIDI":
        _check_midi_length(path)  # music21 lays out every bar of a MIDI file's span: a far note costs hours
    music21 = _music21()
    try:
        score = music21.converter.parse(str(path), format="midi" if kind == "MIDI" else "musicxml")
    except Exception as err:  # music21 raises many kinds for a file it cannot read
        reason = str(err).splitlines()[0][:120] if str(err) else type(err).__name__
        raise UsageError(f"{path} is not a {kind} file music21 can read ({reason}); give a {kind} file") from None
    parts = [p for p in getattr(score, "parts", [score]) if p.flatten().notes]
    if not parts:
        raise UsageError(f"{path} holds no note; give a melody or a partial score")
    if len(parts) > max_voices:
        raise UsageError(
            f"{path} has {len(parts)} parts with notes; a chorale has at most {max_voices} "
            f"({', '.join(VOICES[:max_voices])}): give at most {max_voices}"
        )
    return score_grid(parts)


def _check_midi_length(path: Path) -> None:
    """Refuse a MIDI file that does not read as MIDI, or that spans more than
    :data:`MAX_SCORE_STEPS` 16ths, from its event times alone (mido reads them in milliseconds)."""
    import mido  # only where MIDI is read

    try:
        song = mido.MidiFile(str(path))
    except Exception as err:  # mido raises several kinds for a file that is not MIDI
        reason = str(err).splitlines()[0][:120] if str(err) else type(err).__name__
        raise UsageError(f"{path} is not a MIDI file music21 can read ({reason}); give a MIDI file") from None
    ticks = max((sum(message.time for message in track) for track in song.tracks), default=0)
    _check_length(math.ceil(ticks * STEPS_PER_QUARTER / max(song.ticks_per_beat, 1)))


def grid_to_midi(pitches: np.ndarray, path, *, tempo_bpm: float = 80.0, program: int = 52) -> Path:
    """Write ``(V, T)`` pitches as a MIDI file (one track and channel per voice, General MIDI
    ``program``, 52: choir aahs), equal neighbours joined into one note; atomically."""
    import io

    import mido  # only where MIDI is written

    pitches = np.asarray(pitches)
    if pitches.ndim != 2:
        raise ValueError(f"pitches must be (voices, time), got shape {pitches.shape}")
    ticks = 480 // STEPS_PER_QUARTER  # ticks per 16th at 480 per quarter
    song = mido.MidiFile(ticks_per_beat=480)
    for voice, row in enumerate(pitches.tolist()):
        track = mido.MidiTrack()
        name = VOICES[voice] if len(pitches) == len(VOICES) else f"voice {voice + 1}"
        track.append(mido.MetaMessage("track_name", name=name, time=0))
        if voice == 0:
            track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(tempo_bpm), time=0))
        track.append(mido.Message("program_change", channel=voice, program=program, time=0))
        waited, column = 0, 0
        while column < len(row):
            pitch = row[column]
            end = column + 1
            while end < len(row) and row[end] == pitch:
                end += 1
            length = (end - column) * ticks
            if pitch > 0:
                track.append(mido.Message("note_on", channel=voice, note=pitch, velocity=80, time=waited))
                track.append(mido.Message("note_off", channel=voice, note=pitch, velocity=0, time=length))
                waited = 0
            else:
                waited += length
            column = end
        track.append(mido.MetaMessage("end_of_track", time=waited))
        song.tracks.append(track)
    buffer = io.BytesIO()
    song.save(file=buffer)
    path = Path(path)
    atomic_write_bytes(path, buffer.getvalue())
    return path


SOUNDFONTS = (  # General MIDI SoundFonts where Linux distributions and Homebrew put them
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/soundfonts/FluidR3_GM.sf2",
    "/usr/share/soundfonts/default.sf2",
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/opt/homebrew/share/soundfonts/default.sf2",
)
AUDIO_RATE = 44100


def find_soundfont(soundfont=None) -> Path:
    """``soundfont`` if given, else the first of :data:`SOUNDFONTS` there is; UsageError with what to
    install when there is none."""
    if soundfont is not None:
        path = Path(soundfont).expanduser()
        if not path.is_file():
            raise UsageError(f"soundfont {path} does not exist or is not a file; give a .sf2 file")
        return path
    for candidate in SOUNDFONTS:
        if Path(candidate).is_file():
            return Path(candidate)
    raise UsageError(
        "rendering audio needs a General MIDI SoundFont and none was found; install one (Debian and Ubuntu: "
        "apt install fluid-soundfont-gm) or pass its .sf2 file"
    )


def render_wav(midi_path, wav_path, soundfont=None, timeout: float = 300.0) -> Path:
    """Render a MIDI file to a WAV file (44.1 kHz, 16-bit) with the FluidSynth program; the WAV is
    written whole or not at all. UsageError (one line) when FluidSynth or a SoundFont is missing."""
    import shutil
    import subprocess
    import tempfile

    program = shutil.which("fluidsynth")
    if program is None:
        raise UsageError(
            "rendering audio needs FluidSynth; install it (Debian and Ubuntu: apt install fluidsynth "
            "fluid-soundfont-gm; macOS: brew install fluid-synth) or leave the WAV out"
        )
    font = find_soundfont(soundfont)
    with tempfile.TemporaryDirectory(prefix="gibbsdream-audio-") as folder:
        rendered = Path(folder) / "out.wav"
        # -n no MIDI input, -i no shell, -F render to the file, -T the file type, -r the sample rate
        command = [program, "-ni", "-F", str(rendered), "-T", "wav", "-r", str(AUDIO_RATE), str(font), str(midi_path)]
        done = subprocess.run(command, capture_output=True, timeout=timeout, check=False)
        payload = rendered.read_bytes() if rendered.exists() else b""
        if done.returncode != 0 or len(payload) <= 44:  # 44 bytes: a WAV header and no sound
            reason = (done.stderr or done.stdout).decode(errors="replace").strip().splitlines()
            raise UsageError(f"FluidSynth could not render {midi_path} ({reason[-1] if reason else 'no sound'})")
    wav_path = Path(wav_path)
    atomic_write_bytes(wav_path, payload)  # whole or not at all, as every file gibbsdream writes
    return wav_path


def grid_seconds(pitches: np.ndarray, tempo_bpm: float = 80.0) -> float:
    """How long ``(V, T)`` pitches last at ``tempo_bpm`` quarters per minute."""
    return np.asarray(pitches).shape[-1] / STEPS_PER_QUARTER * 60.0 / tempo_bpm


__all__ = [
    "SILENCE",
    "STEPS_PER_QUARTER",
    "VOICES",
    "Chorale",
    "ChoraleCodec",
    "catalogue_of",
    "find_soundfont",
    "grid_seconds",
    "grid_to_midi",
    "load_chorales",
    "part_grid",
    "pitch_name",
    "pitch_range",
    "read_score",
    "render_wav",
    "satb_parts",
    "score_grid",
    "split_of",
    "transpositions",
    "windows",
]

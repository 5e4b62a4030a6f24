"""StringCodec (strings <-> fixed-length category states) and read_lines (corpus files)."""

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gibbsdream import StringCodec, UsageError
from gibbsdream.data.strings import read_lines

# Any Unicode text (hypothesis leaves out surrogates) that is one line of a text file.
one_line = st.text(min_size=1, max_size=12).filter(lambda s: "\n" not in s and "\r" not in s)
corpora = st.lists(one_line, min_size=1, max_size=20)


# ---- round trips (property tests) ---------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(lines=corpora, pad_side=st.sampled_from(["right", "left"]))
def test_fit_encode_decode_round_trip(lines, pad_side):
    codec, kept, report = StringCodec.fit(lines, pad_side=pad_side)
    assert kept == lines  # nothing is empty, too long or rare with the defaults
    assert report.kept == report.total == len(lines) and not report.skipped
    assert codec.max_length == max(map(len, lines))
    states = codec.encode(kept)
    assert states.shape == (len(kept), codec.max_length) and states.dtype == torch.long
    assert int(states.min()) >= 0 and int(states.max()) < codec.num_categories
    assert codec.decode(states) == kept
    # padding sits on the chosen side, and only there
    for row, text in zip(states.tolist(), kept):
        pad = codec.max_length - len(text)
        chars, padding = (row[: len(text)], row[len(text) :]) if pad_side == "right" else (row[pad:], row[:pad])
        assert all(c > 0 for c in chars) and all(c == 0 for c in padding)


@settings(max_examples=150, deadline=None)
@given(lines=corpora, pad_side=st.sampled_from(["right", "left"]))
def test_case_fold_round_trip_gives_casefolded_text(lines, pad_side):
    codec, kept, _ = StringCodec.fit(lines, case_fold=True, pad_side=pad_side)
    folded = [s.casefold() for s in lines]
    assert kept == folded
    assert codec.decode(codec.encode(kept)) == folded
    # encoding the original (unfolded) strings folds them on the way in
    assert codec.decode(codec.encode(lines)) == folded


@settings(max_examples=100, deadline=None)
@given(lines=corpora, pad_side=st.sampled_from(["right", "left"]), case_fold=st.booleans())
def test_codec_survives_to_dict_json_from_dict(lines, pad_side, case_fold):
    codec, kept, _ = StringCodec.fit(lines, pad_side=pad_side, case_fold=case_fold)
    d = json.loads(json.dumps(codec.to_dict()))
    assert d["kind"] == "string"
    again = StringCodec.from_dict(d)
    assert again == codec
    assert torch.equal(again.encode(kept), codec.encode(kept))
    assert again.decode(codec.encode(kept)) == kept


@settings(max_examples=100, deadline=None)
@given(lines=corpora, max_length=st.integers(1, 12))
def test_max_length_keeps_exactly_the_short_enough_lines(lines, max_length):
    expected = [s for s in lines if len(s) <= max_length]
    if not expected:
        with pytest.raises(UsageError):
            StringCodec.fit(lines, max_length=max_length)
        return
    codec, kept, report = StringCodec.fit(lines, max_length=max_length)
    assert kept == expected
    assert codec.max_length == max_length
    assert report.skipped.get("too long", 0) == len(lines) - len(expected)
    assert codec.decode(codec.encode(kept)) == kept


# ---- corpus reports ---------------------------------------------------------------------------------

LINES = ["abc", "bca", "", "cab", "abcabcabcabc", "abz", ""]  # 2 empty, 1 too long (> 6), 'z' is rare


def test_report_skip_policy():
    codec, kept, report = StringCodec.fit(LINES, max_length=6, min_char_count=2, rare="skip")
    assert kept == ["abc", "bca", "cab"]
    assert codec.alphabet == "abc" and codec.replacement is None and codec.max_length == 6
    assert report.total == 7 and report.kept == 3
    assert dict(report.skipped) == {"empty": 2, "too long": 1, "rare character": 1}
    assert [n for n, _ in report.examples["empty"]] == [3, 7]
    assert report.examples["too long"] == [(5, "abcabcabcabc")]
    assert report.examples["rare character"] == [(6, "abz")]
    assert report.to_dict() == {"total": 7, "kept": 3, "skipped": {"empty": 2, "too long": 1, "rare character": 1}}
    assert "kept 3 of 7" in report.summary()


def test_report_replace_policy():
    codec, kept, report = StringCodec.fit(LINES, max_length=6, min_char_count=2, rare="replace")
    assert kept == ["abc", "bca", "cab", "ab?"]
    assert codec.alphabet == "?abc" and codec.replacement == "?"
    assert report.kept == 4 and dict(report.skipped) == {"empty": 2, "too long": 1}
    # a rare or unseen character is replaced when encoding, too
    assert codec.decode(codec.encode(["abz", "aq"])) == ["ab?", "a?"]


def test_report_keep_policy():
    codec, kept, report = StringCodec.fit(LINES, max_length=6, min_char_count=2, rare="keep")
    assert kept == ["abc", "bca", "cab", "abz"]
    assert codec.alphabet == "abcz" and codec.replacement is None
    assert report.kept == 4 and dict(report.skipped) == {"empty": 2, "too long": 1}


def test_no_rare_characters_means_no_replacement():
    codec, kept, report = StringCodec.fit(["ab", "ba"], min_char_count=2, rare="replace")
    assert kept == ["ab", "ba"] and codec.replacement is None
    assert report.summary() == "kept all 2 lines"


def test_default_max_length_is_the_longest_kept_line():
    codec, kept, report = StringCodec.fit(["a", "", "abcd", "ab"])
    assert codec.max_length == 4 and kept == ["a", "abcd", "ab"]
    assert dict(report.skipped) == {"empty": 1}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"rare": "drop"},
        {"pad_side": "middle"},
        {"max_length": 0},
        {"min_char_count": 0},
        {"rare": "replace", "replacement": "??"},
        {"rare": "replace", "replacement": ""},
    ],
)
def test_fit_rejects_bad_settings(kwargs):
    with pytest.raises(UsageError):
        StringCodec.fit(["abc"], **kwargs)


@pytest.mark.parametrize(
    "lines, kwargs",
    [([""], {}), (["", ""], {}), (["abcdef"], {"max_length": 3}), (["ab", "cd"], {"min_char_count": 5})],
)
def test_fit_without_usable_lines_raises(lines, kwargs):
    with pytest.raises(UsageError, match="no usable lines"):
        StringCodec.fit(lines, **kwargs)


def test_usage_error_is_a_value_error():
    assert issubclass(UsageError, ValueError)


# ---- encoding errors ------------------------------------------------------------------------------


@pytest.fixture
def codec():
    return StringCodec.fit(["abc", "de"])[0]  # alphabet abcde, 3 positions, right padding


def test_encode_rejects_a_character_outside_the_alphabet(codec):
    with pytest.raises(UsageError, match="not in the alphabet"):
        codec.encode(["abx"])
    with pytest.raises(UsageError):
        codec.encode(["ab", "A"])  # case is not folded by this codec


def test_encode_rejects_a_too_long_string(codec):
    with pytest.raises(UsageError, match="longer than"):
        codec.encode(["abcd"])


def test_encode_rejects_an_empty_string(codec):
    with pytest.raises(UsageError):
        codec.encode([""])


def test_encode_of_no_strings(codec):
    assert codec.encode([]).shape == (0, 3)


def test_decode_can_show_padding(codec):
    states = codec.encode(["ab", "e"])
    assert states.tolist() == [[1, 2, 0], [5, 0, 0]]
    assert codec.decode(states, show_padding=True) == ["ab·", "e··"]
    assert codec.decode(states) == ["ab", "e"]


def test_filter_reports_what_cannot_be_encoded(codec):
    kept, report = codec.filter(["ab", "", "abcd", "xy", "ed"])
    assert kept == ["ab", "ed"]
    assert report.total == 5 and report.kept == 2
    assert sum(report.skipped.values()) == 3


@pytest.mark.parametrize(
    "kwargs",
    [
        {"alphabet": "", "max_length": 3},
        {"alphabet": "aa", "max_length": 3},
        {"alphabet": "ab", "max_length": 0},
        {"alphabet": "ab", "max_length": 3, "pad_side": "up"},
    ],
)
def test_codec_constructor_rejects_bad_settings(kwargs):
    with pytest.raises(UsageError):
        StringCodec(**kwargs)


# ---- clamping --------------------------------------------------------------------------------------


def test_clamp_prefix_positions():
    codec = StringCodec("abcde", 5, pad_side="right")
    x, known = codec.clamp_prefix("ab")
    assert x.tolist() == [1, 2, 0, 0, 0]
    assert known.tolist() == [True, True, False, False, False]
    assert x.dtype == torch.long and known.dtype == torch.bool
    x, known = codec.clamp_prefix("edcba")  # the whole string
    assert x.tolist() == [5, 4, 3, 2, 1] and known.all()


def test_clamp_suffix_positions():
    codec = StringCodec("abcde", 5, pad_side="left")
    x, known = codec.clamp_suffix("de")
    assert x.tolist() == [0, 0, 0, 4, 5]
    assert known.tolist() == [False, False, False, True, True]


def test_clamp_on_the_wrong_pad_side_raises():
    right = StringCodec("abcde", 5, pad_side="right")
    left = StringCodec("abcde", 5, pad_side="left")
    with pytest.raises(UsageError, match="--prefix"):
        right.clamp_suffix("de")
    with pytest.raises(UsageError, match="--suffix"):
        left.clamp_prefix("ab")


@pytest.mark.parametrize("text", ["abcdea", "abz", ""])
def test_clamp_rejects_unencodable_text(text):
    with pytest.raises(UsageError):
        StringCodec("abcde", 5, pad_side="right").clamp_prefix(text)
    with pytest.raises(UsageError):
        StringCodec("abcde", 5, pad_side="left").clamp_suffix(text)


def test_clamp_folds_case_like_encode():
    codec = StringCodec("abc", 4, case_fold=True)
    x, known = codec.clamp_prefix("AB")
    assert x.tolist() == [1, 2, 0, 0] and known.tolist() == [True, True, False, False]


def test_to_dict_from_dict_round_trip():
    codec, _kept, _ = StringCodec.fit(
        LINES, max_length=6, min_char_count=2, rare="replace", pad_side="left", case_fold=True, pad_symbol="_"
    )
    d = codec.to_dict()
    assert d == {
        "kind": "string",
        "alphabet": "?abc",
        "max_length": 6,
        "pad_side": "left",
        "case_fold": True,
        "pad_symbol": "_",
        "replacement": "?",
    }
    again = StringCodec.from_dict(json.loads(json.dumps(d)))
    assert again == codec
    assert again.decode(again.encode(["ABZ"]), show_padding=True) == ["___ab?"]


# ---- read_lines -----------------------------------------------------------------------------------------


def test_read_lines_plain_file(tmp_path):
    path = tmp_path / "c.txt"
    path.write_bytes(" a b \r\nc\n\ndé\n".encode())
    assert read_lines(str(path)) == [" a b ", "c", "", "dé"]  # only line endings are removed


@settings(max_examples=60, deadline=None)
@given(lines=st.lists(one_line.filter(lambda s: s.splitlines() == [s]), min_size=1, max_size=10))
def test_read_lines_round_trip(tmp_path_factory, lines):
    path = tmp_path_factory.mktemp("rl") / "corpus.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8", newline="")
    assert read_lines(str(path)) == lines


def test_read_lines_splits_only_at_line_endings(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("a\u2028b\nc\x0cd\ne\x85f\n", encoding="utf-8", newline="")
    assert read_lines(str(path)) == ["a\u2028b", "c\x0cd", "e\x85f"]


def test_read_lines_drops_a_utf8_bom(tmp_path):
    path = tmp_path / "c.txt"
    path.write_bytes(b"\xef\xbb\xbfabc\ndef\n")
    assert read_lines(str(path)) == ["abc", "def"]


def test_read_lines_missing_file(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        read_lines(str(tmp_path / "nope.txt"))


def test_read_lines_empty_file(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_text("")
    with pytest.raises(UsageError, match="empty"):
        read_lines(str(path))


def test_read_lines_only_empty_lines(tmp_path):
    path = tmp_path / "blank.txt"
    path.write_text("\n\n\r\n")
    with pytest.raises(UsageError, match="empty"):
        read_lines(str(path))


def test_read_lines_folder(tmp_path):
    with pytest.raises(UsageError, match="folder"):
        read_lines(str(tmp_path))


def test_read_lines_not_utf8(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("abc\ncafé\n".encode("latin-1"))
    with pytest.raises(UsageError, match=r"not UTF-8.*line 2"):
        read_lines(str(path))


def test_read_lines_unknown_builtin():
    with pytest.raises(UsageError, match="builtin:regions"):
        read_lines("builtin:nope")


def test_read_lines_builtin_regions():
    lines = read_lines("builtin:regions")
    assert len(lines) > 4000
    assert all(isinstance(s, str) and s for s in lines)
    assert len(set(lines)) == len(lines)


def test_read_lines_builtin_countries():
    lines = read_lines("builtin:countries")
    assert 200 < len(lines) < 400
    assert "France" in lines
    codec, kept, _ = StringCodec.fit(lines, case_fold=True)
    assert codec.decode(codec.encode(kept)) == kept


def test_read_lines_builtin_words_names_its_package_when_missing(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "english_words", None)  # as if not installed: importing it fails
    with pytest.raises(UsageError, match="builtin:words needs the english-words package.*pip install english-words"):
        read_lines("builtin:words")


def test_read_lines_builtin_words():
    pytest.importorskip("english_words")  # the bench extra's (the benchmarks' word list)
    lines = read_lines("builtin:words")
    assert len(lines) > 200_000 and lines == sorted(set(lines))
    assert all(w.isalpha() and w == w.lower() for w in lines[:: len(lines) // 1000])

"""Captions: the tokenizer and vocabulary (property tests), caption sources (captions.json, the
class project's pickle read without running code, built-in wordings), the QRNN encoder against a
step-by-step loop, padding that changes nothing, the merges, and the caption context helper."""

import json
import pickle
import string

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gibbsdream.data.captions import (
    FIRST_WORD,
    PAD,
    UNK,
    CaptionVocabulary,
    caption_context,
    caption_table,
    digit_captions,
    draw_captions,
    has_captions,
    load_captions,
    read_captions_json,
    read_captions_pickle,
    shape_captions,
    tokenize,
)
from gibbsdream.data.images import generate_shapes
from gibbsdream.errors import UsageError
from gibbsdream.models.captions import AttentionMerge, CaptionEncoder, ConcatMerge, QRNNDirection, fo_pool
from gibbsdream.models.nade import OrderlessNADE

WORDS = st.text(alphabet=string.ascii_letters + string.digits, min_size=1, max_size=8)
TEXT = st.text(alphabet=string.ascii_letters + string.digits + " ,.;!?'-\t\n", max_size=80)


# ---- tokenizer and vocabulary ---------------------------------------------------------------------


@given(st.text(max_size=60))
def test_tokenize_is_idempotent(text):
    words = tokenize(text)
    assert all(w and not any(c.isspace() for c in w) for w in words)
    assert tokenize(" ".join(words)) == words


@given(TEXT)
def test_tokenize_ignores_case_and_punctuation_of_ascii_text(text):
    assert tokenize(text.upper()) == tokenize(text.lower())
    assert tokenize(text.replace(",", " , ").replace(".", " . ")) == tokenize(text)


@given(st.lists(TEXT, min_size=1, max_size=20), st.integers(1, 3), st.integers(1, 12), TEXT)
@settings(max_examples=60, deadline=None)
def test_vocabulary_codes_known_words_and_maps_rare_ones_to_unk(captions, min_count, max_length, probe):
    counts = {}
    for text in captions:
        for w in tokenize(text):
            counts[w] = counts.get(w, 0) + 1
    if not any(c >= min_count for c in counts.values()):
        with pytest.raises(UsageError, match="caption_min_count"):
            CaptionVocabulary.fit(captions, min_count=min_count, max_length=max_length)
        return
    vocab = CaptionVocabulary.fit(captions, min_count=min_count, max_length=max_length)
    assert set(vocab.words) == {w for w, c in counts.items() if c >= min_count}
    assert vocab.size == FIRST_WORD + len(vocab.words)
    for text in [*captions, probe]:
        ids = vocab.encode(text)
        words = tokenize(text)[:max_length]
        assert len(ids) == len(words) <= max_length
        assert all(UNK <= i < vocab.size for i in ids)
        assert vocab.decode(ids).split() == [w if w in vocab.index else "<unk>" for w in words]
    again = CaptionVocabulary.from_dict(json.loads(json.dumps(vocab.to_dict())))
    assert again == vocab and again.encode(probe) == vocab.encode(probe)
    batch = vocab.encode_batch([probe, *captions])
    assert batch.dtype == torch.long and batch.shape[0] == len(captions) + 1
    for row, text in zip(batch, [probe, *captions]):
        ids = vocab.encode(text)
        assert row[: len(ids)].tolist() == ids and (row[len(ids) :] == PAD).all()


def test_vocabulary_orders_words_by_count_then_alphabet():
    vocab = CaptionVocabulary.fit(["b a c", "a b", "a", "zz"], min_count=1)
    assert vocab.words == ["a", "b", "c", "zz"]
    assert CaptionVocabulary.fit(["b a c", "a b", "a"], min_count=2).words == ["a", "b"]


def test_damaged_vocabulary_is_refused():
    with pytest.raises(UsageError, match="unreadable"):
        CaptionVocabulary.from_dict({"kind": "words"})
    with pytest.raises(UsageError, match="twice"):
        CaptionVocabulary(["a", "a"])


# ---- captions written from labels and attributes ----------------------------------------------------


def test_digit_captions_name_the_digit_in_varied_wording_reproducibly():
    labels = np.arange(10).repeat(5)
    captions = digit_captions(labels, per_image=4, seed=3)
    assert captions == digit_captions(labels, per_image=4, seed=3)
    assert captions != digit_captions(labels, per_image=4, seed=4)
    names = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
    for label, texts in zip(labels, captions):
        assert len(texts) == 4 and len(set(texts)) == 4
        for text in texts:
            words = tokenize(text)
            assert names[label] in words or str(label) in words
            others = {n for i, n in enumerate(names) if i != label} | {str(i) for i in range(10) if i != label}
            assert not others & set(words)
    assert len({t for texts in captions for t in texts}) > 50


def test_shape_captions_say_colour_and_shape_and_sometimes_more():
    raw = generate_shapes(count=60, size=16, seed=1)
    captions = shape_captions(raw.attributes, per_image=4, seed=0)
    assert captions == shape_captions(raw.attributes, per_image=4, seed=0)
    mentions = {"size": 0, "position": 0, "background": 0}
    for attributes, texts in zip(raw.attributes, captions):
        for text in texts:
            words = tokenize(text)
            assert attributes["colour"] in words and attributes["shape"] in words
            mentions["size"] += attributes["size"] in words
            mentions["background"] += "background" in words
            mentions["position"] += attributes["position"] in words or "middle" in words
    assert all(0 < n < 240 for n in mentions.values()), mentions
    assert any(t == f"a {a['colour']} {a['shape']}" for a, texts in zip(raw.attributes, captions) for t in texts)


def test_load_captions_for_builtins_follows_the_images():
    from gibbsdream.data.images import load_images

    data = load_images("builtin:shapes", count=20, size=16, captions=True)
    assert len(data.captions) == 20
    assert all(a["shape"] in tokenize(texts[0]) for a, texts in zip(data.attributes, data.captions))
    assert load_images("builtin:shapes", count=20, size=16).captions is None
    digits = load_images("builtin:digits", captions=True)
    assert len(digits.captions) == 1797


# ---- captions from files ------------------------------------------------------------------------------


def _folder(tmp_path, names=("a.png", "sub/b.png", "c.png")):
    from PIL import Image

    for name in names:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((4, 4), dtype=np.uint8)).save(path)
    return tmp_path


def test_captions_json(tmp_path, capsys):
    folder = _folder(tmp_path)
    (folder / "captions.json").write_text(json.dumps({"a.png": ["a cat", "one cat"], "sub/b.png": "a dog"}))
    names = ["a.png", "c.png", "sub/b.png"]
    assert load_captions(str(folder), names) == [["a cat", "one cat"], [], ["a dog"]]
    assert "1 of 3 images have no caption" in capsys.readouterr().err


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"a.png": ["x"], "nope.png": ["y"]}', "names 'nope.png', which is not an image"),
        ('{"a.png": ["x"],', "not valid JSON"),
        ('["a.png"]', "JSON object"),
        ('{"a.png": [3]}', "captions must be strings"),
        ('{"a.png": {"x": 1}}', "a caption or a list of captions"),
        ('{"a.png": ["..."], "c.png": [""]}', "none of the 3 images"),
    ],
)
def test_bad_captions_json(tmp_path, content, message):
    folder = _folder(tmp_path)
    (folder / "captions.json").write_text(content)
    with pytest.raises(UsageError, match=message):
        load_captions(str(folder), ["a.png", "c.png", "sub/b.png"])


def test_captions_json_must_be_utf8_and_a_folder_needs_captions(tmp_path):
    folder = _folder(tmp_path)
    with pytest.raises(UsageError, match="no captions.json"):
        load_captions(str(folder), ["a.png"])
    (folder / "captions.json").write_bytes(b'{"a.png": ["caf\xe9"]}')
    with pytest.raises(UsageError, match="not UTF-8"):
        read_captions_json(folder / "captions.json")
    with pytest.raises(UsageError, match="not a single file"):
        load_captions(str(folder / "a.png"), ["a.png"])


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_class_project_pickle_of_plain_data_is_read(tmp_path, protocol):
    folder = _folder(tmp_path, names=("train2014/COCO_1.jpg", "val2014/COCO_2.jpg"))
    captions = {"COCO_1": ["a man on a horse", "a horse"], "COCO_2": ("two birds",), "COCO_9": ["elsewhere"]}
    (folder / "dict_key_imgID_value_caps_train_and_valid.pkl").write_bytes(pickle.dumps(captions, protocol=protocol))
    loaded = load_captions(str(folder), ["train2014/COCO_1.jpg", "val2014/COCO_2.jpg"])
    assert loaded == [["a man on a horse", "a horse"], ["two birds"]]


class _Trap:
    """Unpickling this creates a file: evidence that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("payload", ["trap in a dict", "trap alone", "class instance", "garbage", "truncated"])
def test_a_malicious_or_damaged_captions_pickle_is_refused_without_running_anything(tmp_path, payload):
    marker = tmp_path / "RAN"
    path = tmp_path / "captions.pkl"
    blobs = {
        "trap in a dict": pickle.dumps({"COCO_1": ["fine"], "COCO_2": [_Trap(str(marker))]}),
        "trap alone": pickle.dumps(_Trap(str(marker))),
        "class instance": pickle.dumps({"x": UsageError("y")}),
        "garbage": b"\x80\x04not a pickle at all",
        "truncated": pickle.dumps({"COCO_1": ["a long caption"] * 10})[:-7],
    }
    path.write_bytes(blobs[payload])
    with pytest.raises(UsageError, match="captions pickle|refusing"):
        read_captions_pickle(path)
    assert not marker.exists()


# ---- caption tables and drawing -----------------------------------------------------------------------


def test_caption_table_and_draw():
    vocab = CaptionVocabulary.fit(["a b c", "a b", "d"], min_count=1)
    table = caption_table([["a b", "c"], [], ["...", "d a b c"]], vocab)
    assert table.shape == (3, 2, 4)
    assert (table[1] == PAD).all() and (table[2, 1] == PAD).all()  # a caption without words is left out
    generator = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(50):
        drawn = draw_captions(table, 0.0, generator)
        seen.add(tuple(drawn[0].tolist()))
        assert (drawn[1] == PAD).all() and drawn[2].tolist() == table[2, 0].tolist()
    assert seen == {tuple(table[0, 0].tolist()), tuple(table[0, 1].tolist())}
    big = table[[0, 2]].repeat(2000, 1, 1)
    dropped = (draw_captions(big, 0.3, generator) == PAD).all(-1).float().mean().item()
    assert abs(dropped - 0.3) < 0.03  # 4,000 draws: the standard error is 0.007


# ---- the QRNN encoder ---------------------------------------------------------------------------------


def loop_fo_pool(z, f):
    c = torch.zeros_like(z[:, 0])
    out = []
    for t in range(z.shape[1]):
        c = f[:, t] * c + (1 - f[:, t]) * z[:, t]
        out.append(c)
    return torch.stack(out, 1)


@given(st.integers(1, 3), st.integers(1, 9), st.integers(1, 4), st.integers(0, 2**31 - 1))
@settings(max_examples=40, deadline=None)
def test_fo_pool_matches_a_step_by_step_loop(batch, steps, hidden, seed):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(batch, steps, hidden, generator=g, dtype=torch.float64)
    f = torch.rand(batch, steps, hidden, generator=g, dtype=torch.float64)
    f[..., 0] = 0.0  # extreme gates: forget everything ...
    if steps > 1:
        f[:, 1, :] = 1.0  # ... or nothing
    torch.testing.assert_close(fo_pool(z, f), loop_fo_pool(z, f))


def test_qrnn_direction_is_the_recurrence_of_the_paper():
    torch.manual_seed(0)
    layer = QRNNDirection(5, 4, kernel_size=2).double()
    x = torch.randn(2, 6, 5, dtype=torch.float64)
    mask = torch.ones(2, 6, dtype=torch.bool)
    W, b = layer.conv.weight, layer.conv.bias  # (3H, E, 2)
    c = torch.zeros(2, 4, dtype=torch.float64)
    expected = []
    for t in range(6):
        previous = x[:, t - 1] if t > 0 else torch.zeros_like(x[:, 0])
        gates = previous @ W[:, :, 0].T + x[:, t] @ W[:, :, 1].T + b
        z, f, o = torch.tanh(gates[:, :4]), torch.sigmoid(gates[:, 4:8]), torch.sigmoid(gates[:, 8:])
        c = f * c + (1 - f) * z
        expected.append(o * c)
    torch.testing.assert_close(layer(x, mask), torch.stack(expected, 1))


def test_encoder_padding_changes_nothing_and_bidirectional_shapes():
    torch.manual_seed(0)
    for bidirectional in (True, False):
        encoder = CaptionEncoder(12, 8, 5, kernel_size=3, bidirectional=bidirectional, layers=2).double()
        assert encoder.state_size == 5 * (2 if bidirectional else 1)
        ids = torch.tensor([[3, 4, 5], [6, 0, 0]])
        states, mask = encoder(ids)
        assert states.shape == (2, 4, encoder.state_size) and mask.tolist() == [[True] * 4, [True, True, False, False]]
        longer, longer_mask = encoder(torch.cat([ids, torch.zeros(2, 4, dtype=torch.long)], 1))
        torch.testing.assert_close(longer[:, :4], states)
        assert (longer[:, 4:] == 0).all() and not longer_mask[:, 4:].any()
        alone, _ = encoder(ids[1:, :1])
        torch.testing.assert_close(alone[0], states[1, :2])
        # Only a backward pass lets the first word's state depend on the last one.
        changed, _ = encoder(torch.tensor([[3, 4, 7]]))
        first_moves = not torch.allclose(changed[0, 1], states[0, 1])
        assert first_moves == bidirectional
        none, none_mask = encoder(None, batch=3)
        assert none.shape == (3, 1, encoder.state_size) and none_mask.all()


@pytest.mark.parametrize("merge", [AttentionMerge, ConcatMerge])
def test_merges_ignore_whatever_sits_in_padded_positions(merge):
    torch.manual_seed(0)
    block = merge(6, 4)
    h = torch.randn(2, 6, 3, 5)
    states = torch.randn(2, 4, 4)
    mask = torch.tensor([[True, True, False, False], [True, False, False, False]])
    out = block(h, states, mask)
    assert out.shape == h.shape
    garbage = torch.where(mask.unsqueeze(-1), states, torch.randn(2, 4, 4) * 100)
    torch.testing.assert_close(block(h, garbage, mask), out)
    torch.testing.assert_close(block(h, states[:, :2], mask[:, :2]), out)
    assert not torch.allclose(block(h, states * 2, mask), out)  # the caption itself does matter


def test_attention_weights_are_a_softmax_over_caption_positions():
    torch.manual_seed(0)
    block = AttentionMerge(3, 2)
    with torch.no_grad():
        block.value.weight.copy_(torch.eye(3, 2))
        block.value.bias.zero_()
    h = torch.randn(1, 3, 1, 1)
    states = torch.randn(1, 2, 2)
    scores = (h[0, :, 0, 0] @ block.metric @ states[0].T) / 3**0.5
    weights = torch.softmax(scores, -1)
    expected = h[0, :, 0, 0] + torch.eye(3, 2) @ (weights @ states[0])
    torch.testing.assert_close(block(h, states, torch.ones(1, 2, dtype=torch.bool))[0, :, 0, 0], expected)


# ---- the captioned model --------------------------------------------------------------------------------


def captioned(merge="attention", **kwargs):
    torch.manual_seed(0)
    model = OrderlessNADE(
        channels=1,
        num_categories=4,
        width=8,
        depth=3,
        caption_vocab_size=9,
        caption_embedding=6,
        caption_hidden=5,
        caption_merge=merge,
        caption_merge_every=2,
        **kwargs,
    )
    model.caption_vocabulary = CaptionVocabulary(["red", "square", "blue", "circle", "a", "the", "big"], max_length=6)
    return model.eval()


@pytest.mark.parametrize("merge", ["attention", "concat"])
def test_captioned_model_context_forms(merge):
    model = captioned(merge)
    assert model.settings.merge_after() == [1]
    x = torch.randint(0, 4, (3, 1, 5, 5), generator=torch.Generator().manual_seed(1))
    known = torch.rand(3, 1, 5, 5, generator=torch.Generator().manual_seed(2)) < 0.5
    with torch.no_grad():
        none = model.logits(x, known)
        assert none.shape == (3, 1, 5, 5, 4)
        torch.testing.assert_close(model.logits(x, known, torch.zeros(3, 2, dtype=torch.long)), none)
        one = model.logits(x, known, torch.tensor([[6, 2, 3]]))
        torch.testing.assert_close(model.logits(x, known, torch.tensor([[6, 2, 3, 0, 0]] * 3)), one)
        assert not torch.allclose(one, none)
        mixed = model.logits(x, known, torch.tensor([[6, 2, 3], [0, 0, 0], [6, 2, 3]]))
        torch.testing.assert_close(mixed[[0, 2]], one[[0, 2]])
        torch.testing.assert_close(mixed[1], none[1])


def test_models_without_captions_keep_their_config_and_weights():
    plain = OrderlessNADE(channels=1, num_categories=4, width=8, depth=2)
    assert not any(k.startswith("caption") for k in plain.config())
    assert not any(k.startswith(("caption", "merges")) for k in plain.state_dict())
    assert not has_captions(plain)
    with pytest.raises(UsageError, match="trained without captions"):
        caption_context(plain, ["a red square"])
    assert caption_context(plain, None) is None
    with pytest.raises(UsageError, match="caption-merge"):
        OrderlessNADE(channels=1, num_categories=4, caption_vocab_size=5, caption_merge="sum")


def test_caption_context(capsys):
    model = captioned()
    assert has_captions(model) and caption_context(model, None) is None
    ids = caption_context(model, ["A red SQUARE!"])
    assert ids.tolist() == [[6, 2, 3]] and ids.device == next(model.parameters()).device
    two = caption_context(model, ["a blue circle", "red"])
    assert two.tolist() == [[6, 4, 5], [2, 0, 0]]
    assert capsys.readouterr().err == ""
    assert caption_context(model, ["a red zebra"]).tolist() == [[6, 2, UNK]]
    assert "does not know 'zebra'" in capsys.readouterr().err
    assert caption_context(model, ["a " * 10 + "red"]).shape == (1, 6)
    assert "has 11 words; the model reads only the first 6" in capsys.readouterr().err
    assert caption_context(model, ["a café"]).tolist() == [[6, UNK]]
    for bad, message in [
        ("", "no words"),
        ("  ,;. ", "no words"),
        ("zebra", "none of the words"),
        ("猫 と 犬", "none of the words"),
    ]:
        with pytest.raises(UsageError, match=message):
            caption_context(model, [bad])
    with pytest.raises(UsageError, match="list"):
        caption_context(model, "a red square")


def test_captioned_model_trains_and_evaluates():
    from gibbsdream.likelihood import order_log_likelihoods
    from gibbsdream.training import NADETrainConfig, NADETrainer

    model = captioned().train()
    x = torch.randint(0, 4, (16, 1, 5, 5), generator=torch.Generator().manual_seed(0))
    table = caption_table([["a red square"], ["the blue circle", "a circle"]] * 8, model.caption_vocabulary)
    config = NADETrainConfig(width=8, depth=3, epochs=2, batch_size=8, captions=True).check()
    trainer = NADETrainer(model, config, x[:12], x[12:], train_captions=table[:12], validation_captions=table[12:])
    trainer.fit(progress=False)
    assert len(trainer.history) == 2 and all(np.isfinite(r["validation_loss"]) for r in trainer.history)
    values = order_log_likelihoods(
        model.eval(), x[:2], num_orders=2, context=table[:2, 0], generator=torch.Generator().manual_seed(0)
    )
    assert values.shape == (2, 2) and torch.isfinite(values).all()

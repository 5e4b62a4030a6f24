"""Mask distributions for training and mask specs for inpainting: shapes, statistics, bad input.

Statistical checks use fixed seeds, so they are deterministic; each states the bound it uses.
Chi-square critical values are for p = 0.001 (a correct sampler fails one in a thousand seeds).
"""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from gibbsdream import UsageError
from gibbsdream.data.masks import (
    MASK_KINDS,
    Bernoulli,
    Centre,
    Contiguish,
    MaskDistribution,
    Orderless,
    Squares,
    inpaint_mask,
    known_count,
    mask_from_array,
    orderless_loss_scale,
    training_masks,
)

SPATIAL_SPECS = ["squares", "contiguish", "centre", "centre:0.3", "centre:1"]
PER_VARIABLE_SPECS = ["orderless", "bernoulli", "bernoulli:0.05", "bernoulli:1"]
MIXED_SPECS = ["orderless+contiguish", "orderless=0.7,squares=0.2,bernoulli:0.3=0.1", "centre+squares"]
ALL_SPECS = SPATIAL_SPECS + PER_VARIABLE_SPECS + MIXED_SPECS

shapes = st.tuples(st.integers(1, 3), st.integers(1, 7), st.integers(1, 7))
seeds = st.integers(0, 2**31)
FAST = settings(max_examples=40, deadline=None)


def draw(spec, batch_size, shape, seed=0):
    return training_masks(spec)(batch_size, shape, torch.Generator().manual_seed(seed))


def chi_square(counts, expected) -> float:
    counts = torch.as_tensor(counts, dtype=torch.float64)
    expected = torch.as_tensor(expected, dtype=torch.float64)
    return float(((counts - expected) ** 2 / expected).sum())


def hidden_pixels(known):
    """``(B, C, H, W)`` known -> ``(B, H, W)`` hidden, for masks that hide whole pixels."""
    return ~known[:, 0]


# ---- properties shared by every kind ------------------------------------------------------------


def test_mask_kinds_lists_every_kind():
    assert MASK_KINDS == ("orderless", "squares", "contiguish", "centre", "bernoulli")
    for kind in MASK_KINDS:
        training_masks(kind)


@FAST
@given(spec=st.sampled_from(ALL_SPECS), shape=shapes, batch_size=st.integers(1, 9), seed=seeds)
def test_shape_dtype_and_at_least_one_unknown(spec, shape, batch_size, seed):
    known = draw(spec, batch_size, shape, seed)
    assert known.shape == (batch_size, *shape)
    assert known.dtype == torch.bool
    assert known.device.type == "cpu"
    assert (~known).flatten(1).any(dim=1).all(), "every example must hide at least one variable"


@FAST
@given(spec=st.sampled_from(ALL_SPECS), shape=shapes, batch_size=st.integers(1, 9), seed=seeds)
def test_same_seed_same_masks(spec, shape, batch_size, seed):
    first = draw(spec, batch_size, shape, seed)
    again = draw(spec, batch_size, shape, seed)
    assert torch.equal(first, again)
    # An int seed is the same as a CPU generator seeded with it.
    assert torch.equal(training_masks(spec)(batch_size, shape, seed), first)


@FAST
@given(
    spec=st.sampled_from([*SPATIAL_SPECS, "centre+squares"]),
    shape=shapes,
    batch_size=st.integers(1, 9),
    seed=seeds,
)
def test_spatial_kinds_hide_all_channels_of_a_pixel(spec, shape, batch_size, seed):
    known = draw(spec, batch_size, shape, seed)
    assert (known == known[:, :1]).all()


def test_per_variable_kinds_hide_channels_separately():
    for spec in ("orderless", "bernoulli"):
        known = draw(spec, 200, (3, 4, 4))
        assert (known != known[:, :1]).any(), spec


def test_empty_batch_and_device_argument():
    assert draw("orderless+contiguish", 0, (1, 4, 4)).shape == (0, 1, 4, 4)
    known = training_masks("squares")(3, (1, 4, 4), torch.Generator().manual_seed(0), device="cpu")
    assert known.device.type == "cpu"
    assert training_masks("squares")(3, (1, 4, 4)).shape == (3, 1, 4, 4)  # global generator


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_generator_and_device():
    generator = torch.Generator(device="cuda").manual_seed(0)
    known = training_masks("orderless+contiguish+squares+bernoulli+centre")(16, (3, 8, 8), generator)
    assert known.device.type == "cuda"
    again = training_masks("orderless+contiguish+squares+bernoulli+centre")(
        16, (3, 8, 8), torch.Generator(device="cuda").manual_seed(0)
    )
    assert torch.equal(known, again)
    # CPU randomness, mask delivered on the GPU.
    known = training_masks("contiguish")(4, (1, 8, 8), torch.Generator().manual_seed(0), device="cuda")
    assert known.device.type == "cuda"


# ---- orderless ----------------------------------------------------------------------------------


def test_orderless_number_known_is_uniform_on_0_to_D_minus_1():
    shape, batch_size = (1, 2, 3), 6000  # D = 6
    d = known_count(draw("orderless", batch_size, shape, seed=1))
    assert d.min() == 0 and d.max() == 5  # zero known is allowed, all known is not
    counts = torch.bincount(d, minlength=6)
    # 5 degrees of freedom: chi-square < 20.52 at p = 0.001.
    assert chi_square(counts, [batch_size / 6] * 6) < 20.52, counts


def test_orderless_every_subset_of_a_given_size_is_equally_likely():
    # D = 4: the known set S has probability 1/D * 1/binom(D, |S|), for every S except "all known".
    D, batch_size = 4, 8000
    known = draw("orderless", batch_size, (1, 2, 2), seed=2).flatten(1)
    codes = (known.long() * (2 ** torch.arange(D))).sum(dim=1)
    counts = torch.bincount(codes, minlength=2**D)
    assert counts[2**D - 1] == 0
    expected = [batch_size / (D * math.comb(D, code.bit_count())) for code in range(2**D - 1)]
    # 14 degrees of freedom: chi-square < 36.12 at p = 0.001.
    assert chi_square(counts[:-1], expected) < 36.12, counts


def test_orderless_loss_scale_is_D_over_number_unknown():
    known = draw("orderless", 50, (2, 3, 3), seed=3)
    d = known_count(known)
    assert torch.equal(d, known.sum(dim=(1, 2, 3)))
    assert torch.allclose(orderless_loss_scale(known), 18 / (18 - d).float())


# ---- squares ------------------------------------------------------------------------------------


@FAST
@given(shape=shapes, seed=seeds)
def test_squares_are_one_square_inside_the_image(shape, seed):
    hidden = hidden_pixels(draw("squares", 8, shape, seed))
    for hole in hidden:
        rows = hole.any(dim=1).nonzero().squeeze(1)
        cols = hole.any(dim=0).nonzero().squeeze(1)
        side = len(rows)
        assert side == len(cols) >= 1
        assert 1 <= side <= min(shape[1:])
        top, left = int(rows[0]), int(cols[0])
        assert hole[top : top + side, left : left + side].all()
        assert hole.sum() == side * side  # nothing outside that square


def test_squares_side_and_position_cover_their_ranges():
    hidden = hidden_pixels(draw("squares", 3000, (1, 5, 8), seed=4))
    sides = hidden.any(dim=2).sum(dim=1)
    counts = torch.bincount(sides, minlength=6)[1:]
    # Side uniform on {1..5}: 4 degrees of freedom, chi-square < 18.47 at p = 0.001.
    assert chi_square(counts, [600] * 5) < 18.47, counts
    # Every pixel, corners included, is sometimes hidden.
    assert hidden.any(dim=0).all()


# ---- contiguish ---------------------------------------------------------------------------------


def test_contiguish_hidden_count_is_uniform_on_1_to_HW():
    batch_size, shape = 4000, (2, 8, 8)
    hidden = hidden_pixels(draw("contiguish", batch_size, shape, seed=5))
    n = hidden.flatten(1).sum(dim=1)
    counts = torch.bincount(n, minlength=65)
    assert counts[0] == 0
    # 63 degrees of freedom: chi-square < 103.4 at p = 0.001.
    assert chi_square(counts[1:], [batch_size / 64] * 64) < 103.4, counts
    fraction = n.double() / 64
    assert abs(fraction.mean() - 65 / 128) < 0.02  # mean of U{1..64}/64; s.e. 0.0046
    for low in (0.0, 0.25, 0.5, 0.75):  # each quarter of [0, 1] holds about a quarter
        share = ((fraction > low) & (fraction <= low + 0.25)).double().mean()
        assert abs(share - 0.25) < 0.04  # s.e. 0.007


def test_contiguish_holes_are_clumped():
    # Fraction of hidden pixels with a hidden 4-neighbour: for holes of 8..64 pixels of 16x16
    # (at most a quarter of the image) a scatter of the same size gives about 1 - 0.75**4 = 0.68.
    hidden = hidden_pixels(draw("contiguish", 1000, (1, 16, 16), seed=6)).float()
    padded = torch.nn.functional.pad(hidden, (1, 1, 1, 1))
    up, down = padded[:, :-2, 1:-1], padded[:, 2:, 1:-1]
    left, right = padded[:, 1:-1, :-2], padded[:, 1:-1, 2:]
    neighbour = (up + down + left + right) > 0
    n = hidden.flatten(1).sum(dim=1)
    clumped = (neighbour & hidden.bool()).flatten(1).sum(dim=1) / n
    small = (n >= 8) & (n <= 64)
    assert small.sum() > 100
    assert clumped[small].mean() > 0.9


def test_contiguish_tiny_images():
    assert draw("contiguish", 5, (1, 1, 1)).sum() == 0
    n = hidden_pixels(draw("contiguish", 200, (3, 1, 4))).flatten(1).sum(dim=1)
    assert set(n.tolist()) == {1, 2, 3, 4}


# ---- centre -------------------------------------------------------------------------------------


def test_centre_hides_the_middle_4x4_of_8x8():
    known = draw("centre", 3, (3, 8, 8))
    expected = torch.ones(8, 8, dtype=torch.bool)
    expected[2:6, 2:6] = False
    assert (known == expected).all()
    assert torch.equal(draw("centre:0.5", 1, (1, 8, 8)), draw("centre", 1, (1, 8, 8)))


@pytest.mark.parametrize(
    "shape, fraction, rows, cols",
    [
        ((1, 7, 7), 0.5, (1, 5), (1, 5)),  # round(3.5) = 4 rows; odd margin 3: 1 above, 2 below
        ((1, 8, 8), 0.375, (2, 5), (2, 5)),  # 3 rows; odd margin 5: 2 above, 3 below
        ((1, 4, 8), 0.5, (1, 3), (2, 6)),  # non-square image: the fraction applies per axis
        ((1, 8, 8), 0.01, (3, 4), (3, 4)),  # at least one pixel
        ((1, 5, 5), 1.0, (0, 5), (0, 5)),  # the whole image
    ],
)
def test_centre_sizes_and_odd_margins(shape, fraction, rows, cols):
    hidden = hidden_pixels(draw(f"centre:{fraction}", 1, shape))[0]
    expected = torch.zeros(shape[1:], dtype=torch.bool)
    expected[rows[0] : rows[1], cols[0] : cols[1]] = True
    assert torch.equal(hidden, expected)


# ---- bernoulli ----------------------------------------------------------------------------------


def test_bernoulli_rate():
    known = draw("bernoulli:0.3", 500, (3, 8, 8), seed=7)
    rate = (~known).double().mean()
    assert abs(rate - 0.3) < 0.01  # 96,000 variables: s.e. 0.0015
    assert abs((~draw("bernoulli", 500, (3, 8, 8))).double().mean() - 0.5) < 0.01


def test_bernoulli_hides_one_variable_when_the_draw_hides_none():
    known = draw("bernoulli:0.001", 2000, (1, 1, 2), seed=8)
    hidden_count = (~known).flatten(1).sum(dim=1)
    assert hidden_count.min() == 1
    assert (hidden_count == 1).double().mean() > 0.99
    # The rescued variable is uniform: each of the two about half the time (s.e. 0.011).
    assert abs((~known[:, 0, 0, 0]).double().mean() - 0.5) < 0.05


# ---- mixtures and specs -------------------------------------------------------------------------


@pytest.mark.parametrize("spec, share", [("centre:0.5+bernoulli:1", 0.5), ("centre:0.5=3,bernoulli:1=1", 0.75)])
def test_mixture_proportions(spec, share):
    # centre:0.5 and bernoulli:1 (hide all) give different masks, so each example's kind shows.
    known = draw(spec, 4000, (2, 4, 4), seed=9)
    centre = (known == draw("centre", 1, (2, 4, 4))).flatten(1).all(dim=1)
    everything = (~known).flatten(1).all(dim=1)
    assert (centre | everything).all()
    assert abs(centre.double().mean() - share) < 0.04  # s.e. <= 0.008


@pytest.mark.parametrize(
    "spec, canonical",
    [
        ("orderless", "orderless"),
        (" Orderless ", "orderless"),
        ("centre", "centre:0.5"),
        ("center:0.25", "centre:0.25"),
        ("bernoulli", "bernoulli:0.5"),
        ("bernoulli:0.3", "bernoulli:0.3"),
        ("orderless+contiguish", "orderless+contiguish"),
        ("orderless=1,contiguish=1", "orderless+contiguish"),
        ("orderless=0.7,contiguish=0.3", "orderless=0.7,contiguish=0.3"),
        ("orderless=7, contiguish=3", "orderless=0.7,contiguish=0.3"),
        ("squares=1,bernoulli:0.2=3", "squares=0.25,bernoulli:0.2=0.75"),
    ],
)
def test_canonical_specs(spec, canonical):
    dist = training_masks(spec)
    assert str(dist) == canonical
    assert training_masks(canonical) == dist


kind_objects = st.one_of(
    st.just(Orderless()),
    st.just(Squares()),
    st.just(Contiguish()),
    st.floats(1e-6, 1.0).map(Centre),
    st.floats(1e-6, 1.0).map(Bernoulli),
)


@settings(max_examples=100, deadline=None)
@given(
    kinds=st.lists(kind_objects, min_size=1, max_size=4, unique=True),
    weights=st.lists(st.floats(1e-3, 1e3), min_size=4, max_size=4),
    equal=st.booleans(),
)
def test_specs_round_trip(kinds, weights, equal):
    parts = [str(kind) if equal else f"{kind}={weight!r}" for kind, weight in zip(kinds, weights)]
    dist = training_masks("+".join(parts) if equal else ",".join(parts))
    assert isinstance(dist, MaskDistribution)
    assert [kind for kind, _ in dist.components] == kinds
    assert math.isclose(sum(w for _, w in dist.components), 1.0)
    assert training_masks(str(dist)) == dist
    assert str(training_masks(str(dist))) == str(dist)
    assert training_masks(dist) is dist


@pytest.mark.parametrize(
    "spec, words",
    [
        ("gaussian", ["unknown mask kind 'gaussian'", "orderless", "contiguish", "bernoulli"]),
        ("orderless+blobs", ["unknown mask kind 'blobs'", "squares"]),
        ("", ["empty", "orderless"]),
        ("orderless+", ["empty"]),
        ("orderless:3", ["takes no parameter"]),
        ("bernoulli:x", ["cannot read", "'x'"]),
        ("bernoulli:nan", ["finite"]),
        ("bernoulli:0", ["(0, 1]"]),
        ("bernoulli:1.5", ["(0, 1]"]),
        ("centre:0", ["(0, 1]"]),
        ("centre:-0.5", ["(0, 1]"]),
        ("orderless=0,contiguish=1", ["positive"]),
        ("orderless=-1,contiguish=2", ["positive"]),
        ("orderless=1,contiguish", ["some kinds but not others"]),
        ("orderless=a,contiguish=1", ["cannot read mask weight"]),
        ("orderless+orderless", ["twice"]),
    ],
)
def test_bad_training_specs(spec, words):
    with pytest.raises(UsageError) as caught:
        training_masks(spec)
    message = str(caught.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_bad_training_calls():
    dist = training_masks("orderless")
    for shape in [(4, 4), (1, 0, 4), (1, 2.5, 4), "abc"]:
        with pytest.raises(UsageError, match="three positive integers"):
            dist(2, shape, 0)
    with pytest.raises(UsageError, match="batch size"):
        dist(-1, (1, 4, 4), 0)
    with pytest.raises(UsageError, match="generator"):
        dist(2, (1, 4, 4), "seed")
    with pytest.raises(UsageError, match="mask spec must be text"):
        training_masks(0.5)


# ---- inpainting masks ---------------------------------------------------------------------------


def test_inpaint_centre():
    known = inpaint_mask("centre", (3, 8, 8))
    assert known.shape == (3, 8, 8) and known.dtype == torch.bool
    expected = torch.ones(8, 8, dtype=torch.bool)
    expected[2:6, 2:6] = False
    assert (known == expected).all()
    assert torch.equal(inpaint_mask("centre:0.5", (3, 8, 8)), known)
    assert (~inpaint_mask("centre:0.25", (1, 8, 8))).sum() == 4


def test_inpaint_box_coordinates():
    # x = column of the left edge, y = row of the top edge, w columns, h rows.
    known = inpaint_mask("box:1,2,3,4", (2, 8, 6))
    expected = torch.ones(8, 6, dtype=torch.bool)
    expected[2:6, 1:4] = False
    assert (known == expected).all()
    assert inpaint_mask("box: 5, 7, 1, 1", (1, 8, 6))[0].logical_not().nonzero().tolist() == [[7, 5]]


@pytest.mark.parametrize("spec", ["box:4,0,3,2", "box:0,7,1,2", "box:-1,0,2,2", "box:0,0,0,2"])
def test_inpaint_box_outside_the_image(spec):
    with pytest.raises(UsageError, match="does not fit inside the 6x8 .* image"):
        inpaint_mask(spec, (1, 8, 6))


@pytest.mark.parametrize("spec", ["box:1,2,3", "box:1,2,3,x", "box:1.5,2,3,4", "box:"])
def test_inpaint_malformed_box(spec):
    with pytest.raises(UsageError, match="box:x,y,w,h"):
        inpaint_mask(spec, (1, 8, 6))


def test_inpaint_random():
    known = inpaint_mask("random:0.3", (3, 40, 50), torch.Generator().manual_seed(0))
    assert (known == known[:1]).all()
    assert abs((~known[0]).double().mean() - 0.3) < 0.03  # 2,000 pixels: s.e. 0.01
    assert torch.equal(inpaint_mask("random:0.3", (3, 40, 50), 0), known)
    assert not torch.equal(inpaint_mask("random:0.3", (3, 40, 50), 1), known)


def save_png(path, array, mode="L"):
    Image.fromarray(np.asarray(array, dtype=np.uint8)).convert(mode).save(path)
    return path


def test_inpaint_mask_png_white_is_hole(tmp_path):
    gray = np.zeros((6, 5), dtype=np.uint8)
    gray[1:3, 2:4] = 255
    gray[5, 0] = 128  # at the threshold: hole
    gray[4, 4] = 127  # just below: keep
    path = save_png(tmp_path / "hole.png", gray)
    known = inpaint_mask(str(path), (3, 6, 5))
    expected = torch.ones(6, 5, dtype=torch.bool)
    expected[1:3, 2:4] = False
    expected[5, 0] = False
    assert known.shape == (3, 6, 5)
    assert (known == expected).all()
    assert torch.equal(inpaint_mask(path, (3, 6, 5)), known)  # a Path works too
    # An RGB mask is converted to grayscale first.
    rgb = save_png(tmp_path / "hole_rgb.png", gray, mode="RGB")
    assert torch.equal(inpaint_mask(str(rgb), (3, 6, 5)), known)


def test_inpaint_mask_png_size_mismatch(tmp_path):
    path = save_png(tmp_path / "small.png", np.full((4, 4), 255) * np.eye(4))
    with pytest.raises(UsageError) as caught:
        inpaint_mask(str(path), (1, 6, 5))
    assert "4x4" in str(caught.value) and "5x6" in str(caught.value)


def test_inpaint_mask_file_errors(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        inpaint_mask(str(tmp_path / "missing.png"), (1, 4, 4))
    junk = tmp_path / "junk.png"
    junk.write_text("not an image")
    with pytest.raises(UsageError, match="cannot read mask image"):
        inpaint_mask(str(junk), (1, 4, 4))


def test_inpaint_masks_that_hide_nothing_or_everything(tmp_path):
    with pytest.raises(UsageError, match="hides no pixel"):
        inpaint_mask(str(save_png(tmp_path / "black.png", np.zeros((4, 4)))), (1, 4, 4))
    with pytest.raises(UsageError, match="hides every pixel.*gibbsdream sample"):
        inpaint_mask(str(save_png(tmp_path / "white.png", np.full((4, 4), 255))), (1, 4, 4))
    with pytest.raises(UsageError, match="hides every pixel"):
        inpaint_mask("centre:1", (1, 4, 4))
    with pytest.raises(UsageError, match="hides every pixel"):
        inpaint_mask("box:0,0,4,4", (1, 4, 4))
    with pytest.raises(UsageError, match="hides every pixel"):
        inpaint_mask("random:1", (1, 4, 4), 0)
    with pytest.raises(UsageError, match="hides no pixel"):
        inpaint_mask("random:1e-9", (1, 4, 4), 0)


@pytest.mark.parametrize(
    "spec, words",
    [
        ("centre:0", ["(0, 1]"]),
        ("centre:2", ["(0, 1]"]),
        ("centre:half", ["cannot read", "box:x,y,w,h"]),
        ("random:0", ["(0, 1]"]),
        ("random:", ["cannot read"]),
        ("triangle", ["cannot read mask spec", "centre:F", "box:x,y,w,h", "random:P", "mask image"]),
        ("", ["cannot read mask spec"]),
    ],
)
def test_bad_inpaint_specs(spec, words):
    with pytest.raises(UsageError) as caught:
        inpaint_mask(spec, (1, 8, 8), 0)
    message = str(caught.value)
    assert "\n" not in message
    for word in words:
        assert word in message


@FAST
@given(
    hole=st.integers(2, 6).flatmap(
        lambda h: st.lists(st.lists(st.booleans(), min_size=3, max_size=3), min_size=h, max_size=h)
    ),
    channels=st.integers(1, 3),
)
def test_mask_from_array(hole, channels):
    array = np.array(hole)
    H, W = array.shape
    if not array.any() or array.all():
        with pytest.raises(UsageError, match="hides"):
            mask_from_array(array, (channels, H, W))
        return
    known = mask_from_array(array, (channels, H, W))
    assert known.shape == (channels, H, W) and known.dtype == torch.bool
    assert (known == torch.from_numpy(~array)).all()
    assert torch.equal(mask_from_array(torch.from_numpy(array.astype(np.uint8))), known[:1])


def test_mask_from_array_errors():
    with pytest.raises(UsageError, match="2-D"):
        mask_from_array(np.ones((2, 3, 3)))
    with pytest.raises(UsageError, match="3x2 .*image is 4x2"):
        mask_from_array(np.eye(2, 3), (1, 2, 4))

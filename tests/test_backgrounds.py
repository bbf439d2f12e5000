"""The test backgrounds follow METHOD.md's geometry exactly; compositing keeps digit and halo."""
import numpy as np
import pytest
import torch
from skimage.draw import circle_perimeter
from skimage.morphology import disk

from backdrop.backgrounds import (FIXED_DRAWING_FAMILIES, NOISE_RATES, SHAPE_FAMILIES, STROKE_BANK, STROKE_FAMILIES,
                                  TEST_FAMILIES, VAL_FAMILIES, TextureBank, apply_pattern, build_suite,
                                  contact_sheet, family_patterns, halo, noise_suite, pattern,
                                  salt_and_pepper)
from backdrop.data import Split, Splits
from backdrop import evaluate
from backdrop.evaluate import (FIXED_DRAWINGS, FIXED_IMAGES, STROKE_IMAGES, per_class_accuracy, predicted_classes,
                               share_correct, validation_scorer)
from backdrop.errors import UserError

S = 32


def digit(size=S, channels=1, n=1):
    """A synthetic 'digit': a bright vertical stroke and a dim blob near the centre."""
    x = torch.zeros(n, channels, size, size)
    c = size // 2
    x[:, :, c - 6:c + 6, c - 1:c + 1] = 1.0
    x[:, :, c - 2:c + 1, c + 2:c + 5] = 0.4
    return x


def test_family_names():
    assert TEST_FAMILIES == ("stripes", "board", "border", "circles", "clock", "random")
    assert len(SHAPE_FAMILIES) == 6 and len(STROKE_FAMILIES) == 13
    assert VAL_FAMILIES == SHAPE_FAMILIES + STROKE_FAMILIES
    assert not set(VAL_FAMILIES) & set(TEST_FAMILIES)


@pytest.mark.parametrize("name", STROKE_FAMILIES)
def test_stroke_family_is_a_seeded_bank_of_distinct_drawings(name):
    bank = family_patterns(name, S)
    assert bank.shape == (STROKE_BANK, S, S) and bank.dtype == np.float32
    assert set(np.unique(bank)) <= {0.0, 1.0}
    assert (bank.reshape(STROKE_BANK, -1).sum(1) > 0).all()          # no blank drawing
    assert len({b.tobytes() for b in bank}) == STROKE_BANK            # every drawing its own
    with pytest.raises(ValueError):
        bank[0, 0, 0] = 1                                             # shared cache: read-only
    from backdrop import backgrounds
    backgrounds._patterns_cached.cache_clear()
    np.testing.assert_array_equal(family_patterns(name, S), bank)   # the seed fixes the drawings
    tests = [pattern(t, S) for t in TEST_FAMILIES]
    assert not any(np.array_equal(b, t) for b in bank for t in tests)


@pytest.mark.parametrize("kind", ["ring", "arc", "seg", "around"])
def test_stroke_scales_are_ordered(kind):
    """Larger bands draw longer strokes: more pixels on per drawing, s < m < l."""
    ink = [family_patterns(f"{kind}_{band}", S).mean() for band in "sml"]
    assert ink[0] < ink[1] < ink[2], ink


def test_stroke_suite_gives_each_image_its_own_drawing():
    x = digit(n=STROKE_BANK + 2)
    out = build_suite(x, ("ring_m",), clean=False)["ring_m"]
    keep = halo(x).expand_as(x)
    assert torch.equal(out[keep], x[keep])
    bank = torch.from_numpy(family_patterns("ring_m", S).copy())
    assert torch.equal(out[3][~keep[3]], bank[3][None][~keep[3]])
    assert torch.equal(out[STROKE_BANK + 1], out[1])                  # drawing i mod the bank
    assert not torch.equal(out[0], out[1])


def test_validation_scores_every_family_strokes_on_a_subset():
    n = STROKE_IMAGES + 200
    x = digit(n=n)
    y = torch.zeros(n, dtype=torch.long)
    split = Split(x, y)
    scorer = validation_scorer(Splits(split, split, split, "synthetic"))
    assert set(scorer.suite) == {"clean", *VAL_FAMILIES}
    assert all(len(scorer.suite[f][1]) == n for f in ("clean", *SHAPE_FAMILIES))
    assert all(len(scorer.suite[f][1]) == STROKE_IMAGES for f in STROKE_FAMILIES)
    # a predictor right on the clean digit only: every family that draws something scores ~0
    clean = x[0].flatten()

    def predict(b):
        same = (b.flatten(1) == clean).all(1)
        return torch.nn.functional.one_hot(torch.where(same, 0, 1), 10).float()
    accs = scorer(predict)
    assert accs["clean"] == 1.0
    assert all(accs[f] < 0.1 for f in VAL_FAMILIES), accs
    fixed = [f"{f}_fixed" for f in FIXED_DRAWING_FAMILIES]
    assert accs["worst"] == min(accs[f] for f in VAL_FAMILIES + tuple(fixed))


def test_a_known_entry_is_taken_as_measured_and_its_images_are_not_predicted_again():
    """A run's score predicts the clean test images once, for its per-class scores, and hands the
    clean accuracy to the test suite, which must then skip those images."""
    n = 300
    x = digit(n=n)
    y = torch.arange(n) % 10
    split = Split(x, y)
    scorer = evaluate.test_scorer(Splits(split, split, split, "synthetic"))   # (named so: pytest would collect it)
    seen = []

    def predict(b):
        seen.append(len(b))
        return torch.nn.functional.one_hot((b.flatten(1).sum(1) * 7).long() % 10, 10).float()
    full = scorer(predict)
    predicted, seen[:] = sum(seen), []
    pred = predicted_classes(predict, x)
    assert share_correct(pred, y) == full["clean"]
    assert per_class_accuracy(pred, y, [str(k) for k in range(10)])["3"] == (pred[y == 3] == 3).float().mean().item()
    seen[:] = []
    again = scorer(predict, known={"clean": share_correct(pred, y)})
    assert again == full and sum(seen) == predicted - n


def test_fixed_drawing_entry_is_the_weakest_of_the_first_drawings_on_every_image():
    """`<family>_fixed` lays each of the family's first FIXED_DRAWINGS drawings over the first
    FIXED_IMAGES images and keeps the lowest accuracy, so one bad arrangement is not averaged away."""
    n = 8 * FIXED_IMAGES + 50
    x = digit(n=n)
    split = Split(x, torch.zeros(n, dtype=torch.long))
    scorer = validation_scorer(Splits(split, split, split, "synthetic"))

    def predict(b):                                  # right unless a drawing crosses column 4
        return torch.nn.functional.one_hot((b[:, 0, :, 4] > 0).any(1).long(), 10).float()
    accs = scorer(predict)
    assert len(scorer.fixed_y) == FIXED_IMAGES
    small = Split(x[:800], torch.zeros(800, dtype=torch.long))
    assert len(validation_scorer(Splits(split, small, split, "synthetic")).fixed_y) == 100   # an eighth
    for f in FIXED_DRAWING_FAMILIES:
        per_drawing = [(predict(apply_pattern(x[:FIXED_IMAGES], torch.from_numpy(d.copy()))).argmax(1) == 0)
                       .float().mean().item() for d in family_patterns(f, S)[:FIXED_DRAWINGS]]
        assert accs[f"{f}_fixed"] == pytest.approx(min(per_drawing))
        assert min(per_drawing) < max(per_drawing)   # the drawings differ, so the minimum means something


@pytest.mark.parametrize("name", TEST_FAMILIES + VAL_FAMILIES)
@pytest.mark.parametrize("size", [32, 48])
def test_patterns_binary_deterministic(name, size):
    p = pattern(name, size)
    assert p.dtype == np.float32 and p.shape == (size, size)
    assert set(np.unique(p)) <= {0.0, 1.0}
    assert 0 < p.sum() < size * size
    p[:] = 7  # a copy: mutating it must not affect the next call
    np.testing.assert_array_equal(pattern(name, size), pattern(name, size))
    assert set(np.unique(pattern(name, size))) <= {0.0, 1.0}


def test_val_patterns_differ_from_test_patterns():
    for size in (32, 48):
        tests = [pattern(t, size) for t in TEST_FAMILIES]
        for v in VAL_FAMILIES:
            pv = pattern(v, size)
            for t, pt in zip(TEST_FAMILIES, tests):
                assert not np.array_equal(pv, pt), (v, t)
                assert not np.array_equal(pv, 1 - pt), (v, t)


def test_unknown_pattern_is_one_line_user_error():
    with pytest.raises(UserError) as e:
        pattern("zebra")
    msg = str(e.value)
    assert "\n" not in msg and "zebra" in msg
    for name in TEST_FAMILIES + VAL_FAMILIES:
        assert name in msg


def test_border_is_exact_two_pixel_frame():
    p = pattern("border")
    expected = np.ones((S, S), np.float32)
    expected[2:S - 2, 2:S - 2] = 0
    np.testing.assert_array_equal(p, expected)
    assert p.sum() == S * S - (S - 4) ** 2 == 4 * 2 * S - 4 * 4 == 240


def test_board_six_pixel_squares_shifted_origin():
    p = pattern("board")
    assert (p[0:4, 0:4] == 0).all()              # top-left (partial) square black
    assert (p[4:10, 4:10] == 0).all()            # a full 6 px square, same colour diagonally
    assert (p[0:4, 4:10] == 1).all() and (p[4:10, 0:4] == 1).all()
    assert (p[4:10, 10:16] == 1).all() and (p[10:16, 10:16] == 0).all()
    # colour changes exactly at rows/cols 4, 10, 16, 22, 28 and nowhere else
    changes = np.nonzero(np.diff(p[0]))[0] + 1
    np.testing.assert_array_equal(changes, [4, 10, 16, 22, 28])
    np.testing.assert_array_equal(np.nonzero(np.diff(p[:, 0]))[0] + 1, [4, 10, 16, 22, 28])
    r, c = np.mgrid[0:S, 0:S]
    np.testing.assert_array_equal(p, ((r + 2) // 6 + (c + 2) // 6) % 2)


def test_stripes_geometry():
    p = pattern("stripes")
    # drawn independently: lines row = col + b, b = -S+1, -S+11, ..., each also at b+1 (2 px thick)
    expected = np.zeros((S, S), np.float32)
    for b in range(-S + 1, S, 10):
        for bb in (b, b + 1):
            for col in range(S):
                if 0 <= col + bb < S:
                    expected[col + bb, col] = 1
    np.testing.assert_array_equal(p, expected)
    assert p[0, S - 1] == 1          # the first line b = -S+1 passes through the top-right corner
    assert p[1, S - 1] == 1          # ... and its second pixel row below it
    assert p[S - 1, 0] == 0          # row-col = S-1 = 31 -> offset 62 mod 10 = 2: a gap
    for row in range(S):             # interior runs are 2 px, starts 10 px apart
        on = np.nonzero(p[row])[0]
        starts = [c for c in on if c > 0 and c - 1 not in on]   # runs not cut by the left edge
        runs = [len([k for k in on if s <= k < s + 10]) for s in starts]
        assert len(starts) >= 2 and np.all(np.diff(starts) == 10)
        inner = [n for s, n in zip(starts, runs) if s < S - 1]
        assert all(n == 2 for n in inner)


def test_random_is_fixed_quarter():
    p = pattern("random")
    assert p.sum() == 256
    np.testing.assert_array_equal(p, pattern("random"))
    np.testing.assert_array_equal(p, salt_and_pepper(0.25, S, seed=0))
    assert not np.array_equal(p, salt_and_pepper(0.25, S, seed=1))


def test_salt_and_pepper_exact_counts():
    for rate in NOISE_RATES:
        assert salt_and_pepper(rate).sum() == round(rate * S * S)
    assert salt_and_pepper(0.0).sum() == 0 and salt_and_pepper(1.0).sum() == S * S
    with pytest.raises(UserError):
        salt_and_pepper(1.5)


def test_circles_four_outlines():
    p = pattern("circles")
    expected = np.zeros((S, S), np.float32)
    for (r, c) in [(8, 8), (S - 8, 8), (8, S - 8), (S - 8, S - 8)]:
        rr, cc = circle_perimeter(r, c, 6, shape=(S, S))
        expected[rr, cc] = 1
        assert p[r, c] == 0                                  # hollow centre
        for dr, dc in [(6, 0), (-6, 0), (0, 6), (0, -6)]:    # radius 6 in all four directions
            assert p[r + dr, c + dc] == 1
        assert p[r + 5, c] == 0 and p[r - 7, c] == 0
    np.testing.assert_array_equal(p, expected)
    # every lit pixel lies about 6 px from one of the centres
    r, c = np.nonzero(p)
    d = np.min([np.hypot(r - a, c - b) for a, b in [(8, 8), (24, 8), (8, 24), (24, 24)]], axis=0)
    assert np.all(np.abs(d - 6) < 1)


def test_clock_rings_and_ticks():
    p = pattern("clock")
    h = S // 2
    for rad in (h - 1, h - 2):
        rr, cc = circle_perimeter(h, h, rad, shape=(S, S))
        assert (p[rr, cc] == 1).all()
    band = slice(h - 1, h + 2)
    assert (p[0:7, band] == 1).all()          # 12 o'clock, rows 0..6
    assert (p[band, 0:7] == 1).all()          # 9 o'clock, cols 0..6
    assert (p[S - 6:S, band] == 1).all()      # 6 o'clock, rows S-6..S-1
    assert (p[band, S - 6:S] == 1).all()      # 3 o'clock, cols S-6..S-1
    # ticks end exactly there and are exactly 3 px wide
    assert p[7, h] == 0 and p[h, 7] == 0 and p[S - 7, h] == 0 and p[h, S - 7] == 0
    assert (p[3:7, h - 2] == 0).all() and (p[3:7, h + 2] == 0).all()
    assert (p[h - 2, 3:7] == 0).all() and (p[h + 2, 3:7] == 0).all()
    # and nothing else inside the inner ring
    r, c = np.mgrid[0:S, 0:S]
    inside = (np.hypot(r - h, c - h) < h - 3) & ~((np.abs(r - h) <= 1) | (np.abs(c - h) <= 1))
    assert (p[inside] == 0).all()
    assert p[h, h] == 0


def test_halo_single_pixel_is_radius_two_disk():
    x = torch.zeros(1, 1, S, S)
    x[0, 0, 10, 20] = 0.3
    h = halo(x)
    assert h.dtype == torch.bool and h.shape == (1, 1, S, S)
    assert h.sum() == 13
    expected = np.zeros((S, S), bool)
    expected[8:13, 18:23] = disk(2).astype(bool)
    np.testing.assert_array_equal(h[0, 0].numpy(), expected)


def test_halo_any_channel_and_batched():
    x = torch.zeros(2, 3, S, S)
    x[0, 2, 5, 5] = 1.0       # only the third channel is on
    x[1, 0, 0, 0] = 1.0       # corner: disk clipped to 6 pixels
    h = halo(x)
    assert h.shape == (2, 1, S, S)
    assert h[0].sum() == 13 and h[1].sum() == 6


@pytest.mark.parametrize("name", TEST_FAMILIES + VAL_FAMILIES)
def test_compositing_keeps_digit_and_halo(name):
    x = digit(channels=3, n=2)
    x[1] *= 0.5
    out = apply_pattern(x, pattern(name))
    keep = halo(x).expand_as(x)
    assert torch.equal(out[keep], x[keep])
    pat = torch.from_numpy(pattern(name)).expand_as(x)
    assert torch.equal(out[~keep], pat[~keep])
    # same when the pattern is given as a tensor
    assert torch.equal(apply_pattern(x, torch.from_numpy(pattern(name))), out)


def test_apply_pattern_size_mismatch():
    with pytest.raises(UserError):
        apply_pattern(digit(), pattern("board", 48))


def test_build_suite():
    x = digit(n=3)
    suite = build_suite(x)
    assert list(suite) == ["clean"] + list(TEST_FAMILIES)
    assert suite["clean"] is x
    for name in TEST_FAMILIES:
        assert suite[name].shape == x.shape
        assert torch.equal(suite[name], apply_pattern(x, pattern(name)))
    val = build_suite(x, VAL_FAMILIES, clean=False)
    assert list(val) == list(VAL_FAMILIES)
    # size taken from x
    x48 = digit(size=48)
    s48 = build_suite(x48, ("border",))
    assert s48["border"].shape == (1, 1, 48, 48)
    assert s48["border"][0, 0, 0, 0] == 1 and s48["border"][0, 0, 10, 10] == 0


def test_noise_suite():
    assert len(NOISE_RATES) == 20
    np.testing.assert_allclose(NOISE_RATES, [i / 100 for i in range(10)] + [i / 10 for i in range(1, 11)])
    x = digit(n=2)
    ns = noise_suite(x)
    assert list(ns) == list(NOISE_RATES)
    assert torch.equal(ns[0.0], x)                 # rate 0: an all-black pattern
    keep = halo(x).expand_as(x)
    assert (ns[1.0][~keep] == 1).all() and torch.equal(ns[1.0][keep], x[keep])
    outside = (~keep).sum().item()
    counts = [(ns[r][~keep] == 1).sum().item() for r in NOISE_RATES]
    assert counts == sorted(counts)                # nested patterns: more pixels at higher rate
    assert abs(counts[NOISE_RATES.index(0.5)] - 0.5 * outside) < 0.1 * outside


def test_texture_bank():
    bank = TextureBank(size=S, channels=1, seed=0)
    assert len(bank) >= 5
    crops = bank.sample(16, generator=torch.Generator().manual_seed(3))
    assert crops.shape == (16, 1, S, S) and crops.dtype == torch.float32
    assert crops.min() >= 0 and crops.max() <= 1
    stds = crops.flatten(1).std(dim=1)
    assert (stds > 1e-3).sum() >= 12               # textured, not flat
    assert len({tuple(c.flatten()[:50].tolist()) for c in crops}) == 16
    again = bank.sample(16, generator=torch.Generator().manual_seed(3))
    assert torch.equal(crops, again)               # reproducible from the generator
    rgb = TextureBank(size=24, channels=3).sample(4)
    assert rgb.shape == (4, 3, 24, 24) and 0 <= rgb.min() and rgb.max() <= 1
    with pytest.raises(UserError):
        TextureBank(channels=2)


def test_contact_sheet_writes_png(tmp_path):
    path = tmp_path / "sheet" / "contact.png"
    contact_sheet(digit(), path)
    data = path.read_bytes()
    assert len(data) > 1000 and data[:8] == b"\x89PNG\r\n\x1a\n"

"""The method itself: networks, masks, augmentation alignment, the game, and learning."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage.filters import threshold_otsu

from backdrop import masks as M
from backdrop.algorithms import ALGORITHMS, Adversarial, GradReverse
from backdrop.augment import Augment
from backdrop.errors import UserError
from backdrop.keying import key
from backdrop.evaluate import accuracy
from backdrop.models import AGCNN, BackgroundGenerator, Classifier, MultiScaleGenerator, UNet
from backdrop.train import train
from conftest import tiny_config


def test_network_shapes():
    x = torch.rand(4, 1, 32, 32)
    assert Classifier()(x).shape == (4, 10)
    m = UNet()(x)
    assert m.shape == (4, 1, 32, 32) and 0 <= m.min() and m.max() <= 1
    g, fused = AGCNN()(x)
    assert g.shape == fused.shape == (4, 10)
    for noise_dim, tiles in [(1, 2), (4, 1), (2, 4)]:
        gen = BackgroundGenerator(noise_dim=noise_dim, tiles=tiles)
        z = gen.sample_noise(3)
        assert z.shape == (3 * tiles * tiles, noise_dim, 4, 4)
        assert gen(z).shape == (3, 1, 32, 32)


def test_generator_tiles_come_from_their_own_noise():
    gen = BackgroundGenerator(noise_dim=1, tiles=2)
    z = gen.sample_noise(1)
    b1 = gen(z)
    z2 = z.clone()
    z2[3] = torch.randn_like(z2[3])            # the bottom-right tile's noise only
    b2 = gen(z2)
    diff = (b1 - b2).abs()[0, 0]
    assert diff[:16, :16].max() == 0 and diff[:16, 16:].max() == 0 and diff[16:, :16].max() == 0
    assert diff[16:, 16:].max() > 0


def test_multiscale_generator_draws_each_image_from_one_head_at_its_own_scale():
    """Image i comes from head i mod 3, whose tiles are 4, 2 and 1 per side, and reads only its
    first tiles' noise; the ascent's gradient reaches every head."""
    gen = MultiScaleGenerator(noise_dim=2, tiles=4, scales=3)
    assert [h.tiles for h in gen.heads] == [4, 2, 1]
    z = gen.sample_noise(6, torch.Generator().manual_seed(0))
    assert z.shape == (6 * 16, 2, 4, 4)
    b = gen(z)
    per_image = z.view(6, 16, 2, 4, 4)
    for i in range(6):
        head = gen.heads[i % 3]
        assert torch.allclose(b[i], head(per_image[i, :head.tiles ** 2])[0])
    z2 = z.clone()
    z2.view(6, 16, 2, 4, 4)[5, 1:] += 1.0            # image 5 (the 1-tile head): unread noise only
    assert torch.equal(gen(z2)[5], b[5])
    b.mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for h in gen.heads for p in h.parameters())
    with pytest.raises(UserError, match="'generator_scales' = 3 halves 'tiles' = 2"):
        from backdrop.hparams import make_config
        make_config({"tiles": 2, "generator_scales": 3})


def test_mask_penalties():
    m = torch.zeros(2, 1, 8, 8)
    m[:, :, :4] = 1                             # half the image, one horizontal edge
    assert M.area_penalty(m, 0.2).item() == pytest.approx(0.3)
    assert M.area_penalty(m, 0.2, squared=True).item() == pytest.approx(0.09)
    assert M.area_penalty(m, 0.6).item() == 0
    # one edge between rows 3 and 4: 8 of 7*8 vertical neighbour pairs differ, no horizontal ones
    assert M.total_variation(m).item() == pytest.approx(8 / 56)


def light_backdrop_digits(path, seed=0):
    """The digits drawn in dark, tinted ink on a light studio backdrop (a gradient, a tint and
    sensor noise), saved as an RGB .npz: a toy of the studio user's photographs."""
    from backdrop.data import load_dataset
    d = load_dataset("digits")
    a = torch.cat([d.train.x, d.val.x, d.test.x]).numpy()[:, 0]
    a = np.where(a > 0.25, a, 0)                       # the ink's opacity, without the faint resampling halo
    rng = np.random.RandomState(seed)
    n, rr = len(a), np.mgrid[0:32, 0:32][0] / 32
    backdrop = (rng.uniform(0.6, 0.9, (n, 1, 1, 1)) + rng.uniform(-0.05, 0.05, (n, 1, 1, 1)) * rr[None, ..., None]
                + rng.uniform(-0.03, 0.03, (n, 1, 1, 3)))
    img = a[..., None] * rng.uniform(0.0, 0.5, (n, 1, 1, 3)) + (1 - a[..., None]) * backdrop
    img += rng.normal(0, 0.01, img.shape)
    np.savez(path, x=(img.clip(0, 1) * 255).round().astype(np.uint8),
             y=torch.cat([d.train.y, d.val.y, d.test.y]).numpy())
    return f"npz:{path}"


def test_the_mask_phase_finds_the_object_on_a_light_backdrop(tmp_path):
    """The mask phase shows f the keyed backdrop where the mask is off (mask_fill=backdrop), so the
    label-free mask covers the object; filled with black, f (which never saw black) reads a black
    silhouette on the backdrop better than the object on black, and the mask prefers the backdrop.
    `polarity` tells the two apart: the mask's share on the object against the object's share;
    the game logs it for its frozen masks, and warns when they are not on the object."""
    import warnings
    from backdrop.data import splits_of
    dataset = light_backdrop_digits(tmp_path / "light.npz")
    on_object = {}
    for fill in ("backdrop", "black"):
        cfg = tiny_config(dataset=dataset, method="adversarial", epochs_f=8, epochs_mask=4, epochs_adv=0,
                          mask_area=0.3, mask_fill=fill)
        splits = splits_of(cfg)
        logged = {}
        alg = train(cfg, splits, on_epoch=lambda e: logged.update(e.losses) if e.phase == "mask" else None)
        assert accuracy(alg.predict, splits.test.x, splits.test.y) > 0.8
        # The game's check of its frozen masks: a warning exactly when they miss the object.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            alg.begin_phase("adversarial", splits.train.x)
        missed = [w for w in caught if "masks are not on the object" in str(w.message)]
        game = alg.mask_check
        assert len(missed) == (game["mask_on_object"] <= game["object_share"]), (fill, game, caught)
        assert len(missed) == (fill == "black"), (fill, game)
        x = splits.val.x
        polarity = M.polarity(M.binarize(alg.f_m(x).detach(), cfg["binarize"], cfg["mask_area"]), key(x))
        assert 0.25 < polarity["object_share"] < 0.45
        assert logged["object_share"] == pytest.approx(polarity["object_share"], abs=0.02)
        on_object[fill] = (polarity["mask_on_object"] / polarity["object_share"], logged["mask_on_object"])
    assert on_object["backdrop"][0] > 2.0 and on_object["backdrop"][1] > 0.6, on_object
    assert on_object["black"][0] < 1.5, on_object


def test_on_a_black_backdrop_the_mask_phase_trains_as_it_always_did(digits):
    """The keyed backdrop of a black frame (augmented too) is exactly 0, so filling with it is x*m
    bit for bit (and the game's `black_fraction` share is black): MNIST-style data train the same
    U-Net with either fill."""
    from backdrop.keying import keyed_backdrop
    assert torch.equal(keyed_backdrop(digits.train.x), torch.zeros_like(digits.train.x))
    moved, = Augment()(digits.train.x[:256], generator=torch.Generator().manual_seed(0))
    assert torch.equal(keyed_backdrop(moved), torch.zeros_like(moved))     # the game's share on the plain backdrop too
    nets = {}
    for fill in ("backdrop", "black"):
        cfg = tiny_config(method="adversarial", epochs_f=1, epochs_mask=1, epochs_adv=0, mask_fill=fill, augment=True)
        nets[fill] = train(cfg, digits).f_m.state_dict()
    assert all(torch.equal(nets["backdrop"][k], nets["black"][k]) for k in nets["black"])


def test_otsu_matches_scikit_image():
    g = torch.Generator().manual_seed(0)
    imgs = torch.cat([0.2 * torch.rand(4, 1, 16, 16, generator=g), 0.7 + 0.3 * torch.rand(4, 1, 16, 16, generator=g)], 3)
    t = M.otsu_thresholds(imgs)
    for i in range(4):
        assert abs(t[i].item() - threshold_otsu(imgs[i].numpy())) < 0.3   # both split the two modes
        hard = M.binarize(imgs[i:i + 1], "otsu")
        assert hard[..., 16:].min() == 1 and hard[..., :16].max() == 0
    q = M.binarize(torch.rand(2, 1, 20, 20, generator=g), "quantile", area=0.2)
    assert q.mean().item() == pytest.approx(0.2, abs=0.01)


def test_augmentation_keeps_masks_aligned(digits):
    x = digits.train.x[:64]
    m = M.heuristic_mask(x)
    aug = Augment()
    xa, ma = aug(x, m, generator=torch.Generator().manual_seed(1))
    # Same geometry: the transformed mask is nonzero exactly where the transformed image is.
    assert torch.equal(ma > 0, xa > 0)
    assert not torch.equal(xa, x)
    # A second, independent draw (what the companion code effectively did) misaligns them.
    _, ma_other = aug(x, m, generator=torch.Generator().manual_seed(2))
    assert not torch.equal(ma_other > 0, xa > 0)


def test_augmentation_continues_the_backdrop_and_never_the_mask():
    """What a shift or rotation moves into the frame: the image's own edge (a grey studio backdrop
    stays grey, not black), and for a mask, not-object. A mask that is 1 at the frame (a learned
    mask can be) must not grow there."""
    x = torch.full((16, 1, 32, 32), 0.5)
    m = torch.ones(16, 1, 32, 32)
    xa, ma = Augment(brightness=(1.0, 1.0))(x, m, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(xa, x)
    assert (ma < 0.5).any(dim=(1, 2, 3)).float().mean() > 0.9     # nearly every image moved some not-object in


def test_grad_reverse_is_the_ascent_gradient():
    """The fused step gives f_b exactly the gradient of −CE (+ white penalty), f that of +CE."""
    torch.manual_seed(0)
    cfg = tiny_config()
    alg = Adversarial(cfg)
    x, y = torch.rand(8, 1, 32, 32), torch.randint(0, 10, (8,))
    m = M.heuristic_mask((x > 0.7).float() * x)
    z = alg.f_b.sample_noise(8)

    alg.zero_grad()
    ce = F.cross_entropy(alg.f(M.composite(x, m, GradReverse.apply(alg.f_b(z)))), y)
    ce.backward()
    fused_b = [p.grad.clone() for p in alg.f_b.parameters()]
    fused_f = [p.grad.clone() for p in alg.f.parameters()]

    alg.zero_grad()
    (-F.cross_entropy(alg.f(M.composite(x, m, alg.f_b(z))), y)).backward()
    for a, b in zip(fused_b, alg.f_b.parameters()):
        assert torch.allclose(a, b.grad, atol=1e-6)
    alg.zero_grad()
    F.cross_entropy(alg.f(M.composite(x, m, alg.f_b(z).detach())), y).backward()
    for a, b in zip(fused_f, alg.f.parameters()):
        assert torch.allclose(a, b.grad, atol=1e-6)


def test_adversary_ascends_with_f_frozen(digits):
    """With f trained and then frozen, f_b's steps raise the classifier's loss on composites."""
    cfg = tiny_config(method="adversarial", mask="heuristic", epochs_f=3, epochs_adv=0, lr_b=1e-2,
                      ascent_per_descent=2.0)
    alg = train(cfg, digits)
    x, y = digits.val.x[:256], digits.val.y[:256]
    m = M.heuristic_mask(x)
    z = alg.f_b.sample_noise(len(x), torch.Generator().manual_seed(0))

    def loss():
        with torch.no_grad():
            return F.cross_entropy(alg.f(M.composite(x, m, alg.f_b(z))), y).item()

    f_before = [p.clone() for p in alg.f.parameters()]
    before = loss()
    for _ in range(30):
        alg.ascend(x[:64], y[:64], m[:64])
    after = loss()
    assert after > before + 0.5, (before, after)
    assert all(torch.equal(a, b) for a, b in zip(f_before, alg.f.parameters())), "f must stay frozen"


def constant_baseline(split):
    return np.bincount(split.y.numpy()).max() / len(split.y)


@pytest.mark.parametrize("method,overrides", [
    ("vanilla", dict(epochs_f=4)),
    ("adversarial", dict(epochs_f=4, epochs_mask=0, mask="heuristic", epochs_adv=2, generator_scales=2)),
    ("attention", dict(epochs_f=2)),          # ~15 s an epoch on 2 cores; 80 % after 2 (chance 10 %)
    ("adversarial", dict(epochs_f=4, epochs_mask=1, epochs_adv=2)),
    ("adversarial", dict(epochs_f=3, epochs_adv=2, schedule="end_to_end", ascent_per_descent=0.5)),
])
def test_each_method_learns(digits, method, overrides):
    cfg = tiny_config(method=method, lr_b=1e-5, **overrides)
    alg = train(cfg, digits)
    acc = accuracy(alg.predict, digits.test.x, digits.test.y)
    chance = max(0.1, constant_baseline(digits.test))
    assert acc > 3 * chance, (method, acc, chance)


def test_registry_entries_share_one_interface():
    assert set(ALGORITHMS) == {"vanilla", "attention", "adversarial"}
    for cls in ALGORITHMS.values():
        assert callable(getattr(cls, "predict")) and callable(getattr(cls, "update"))


def test_every_background_choice_is_the_adversary_or_a_registered_source():
    from backdrop.background_sources import SOURCES
    from backdrop.hparams import HPARAMS
    assert HPARAMS["background"].choices == ("adv", *SOURCES)
    assert HPARAMS["mask"].choices == tuple(M.MASK_SOURCES)
    for name, cls in SOURCES.items():
        b = cls(tiny_config(), 3, 16).draw(5, torch.Generator().manual_seed(0))
        assert b.shape == (5, 3, 16, 16) and 0 <= b.min() and b.max() <= 1, name


@pytest.mark.parametrize("background", ["black", "noise", "real", "fixed", "randconv"])
def test_background_modes_run(digits, background):
    cfg = tiny_config(background=background, mask="heuristic", epochs_f=1, epochs_adv=1, limit=64)
    from backdrop.data import load_dataset
    small = load_dataset("digits", limit=64)
    alg = train(cfg, small)
    b = alg.backgrounds(5, "cpu")
    assert b.shape == (5, 1, 32, 32) and 0 <= b.min() and b.max() <= 1
    if background == "black":
        assert b.max() == 0
    else:
        assert b.std() > 0


def test_attention_crops_the_hot_region():
    net = AGCNN(tau=0.7)
    x = torch.rand(2, 1, 32, 32)
    pooled = torch.zeros(2, 128, 4, 4)
    pooled[0, :, 1:3, 2:4] = 1.0               # image 0: hot block rows 8..23, cols 16..31
    pooled[1] = 1.0                            # image 1: all hot → the whole image
    crops = net.crop(x, pooled)
    assert crops.shape == x.shape
    expect = F.interpolate(x[:1, :, 8:24, 16:32], size=32, mode="bilinear", align_corners=False)
    # Equal but for the outermost ring, where grid_sample blends in the pixel just outside the box.
    assert torch.allclose(crops[:1, :, 1:-1, 1:-1], expect[:, :, 1:-1, 1:-1], atol=1e-5)
    assert torch.allclose(crops[1], x[1], atol=1e-5)


def test_black_fraction_puts_that_share_of_the_batch_on_the_plain_backdrop():
    """The share shows f its objects on the clean data's own surround: black (x*m alone) on a black
    backdrop, the keyed studio backdrop on any other."""
    from backdrop.keying import keyed_backdrop
    cfg = tiny_config(black_fraction=0.25)
    alg = Adversarial(cfg)
    x, m, b = torch.rand(8, 1, 32, 32), (torch.rand(8, 1, 32, 32) > 0.5).float(), torch.rand(8, 1, 32, 32)
    x[..., :4, :] = x[..., -4:, :] = x[..., :4] = x[..., -4:] = 0      # a black backdrop, an object inside
    out = alg.composite(x, m, b)
    assert torch.equal(out[:2], x[:2] * m[:2])                 # 2 of 8 on black: x * m alone
    assert torch.equal(out[2:], M.composite(x[2:], m[2:], b[2:]))
    rr = torch.arange(32.0)[:, None] / 32
    light = (0.7 + 0.1 * rr).expand(8, 1, 32, 32).clone()      # a light backdrop with a gradient
    light[..., 10:22, 10:22] = 0.2
    out = alg.composite(light, m, b)
    assert torch.allclose(keyed_backdrop(light), (0.7 + 0.1 * rr).expand(8, 1, 32, 32), atol=1e-6)
    assert torch.equal(out[:2], M.composite(light[:2], m[:2], keyed_backdrop(light[:2])))
    assert torch.equal(out[2:], M.composite(light[2:], m[2:], b[2:]))


def test_real_fraction_puts_the_next_share_of_the_batch_on_photographs():
    cfg = tiny_config(black_fraction=0.25, real_fraction=0.5)
    alg = Adversarial(cfg)
    x, m, b = torch.rand(8, 1, 32, 32), (torch.rand(8, 1, 32, 32) > 0.5).float(), torch.rand(8, 1, 32, 32)
    x[..., :4, :] = x[..., -4:, :] = x[..., :4] = x[..., -4:] = 0      # a black backdrop
    replay = torch.Generator()
    replay.set_state(alg.noise.get_state())
    out = alg.composite(x, m, b)
    photos = alg.source("real").draw(4, replay)                 # the crops composite drew
    assert torch.equal(out[:2], x[:2] * m[:2])                  # 2 of 8 on black
    assert torch.equal(out[2:6], M.composite(x[2:6], m[2:6], photos))   # the next 4 on photographs
    assert torch.equal(out[6:], M.composite(x[6:], m[6:], b[6:]))       # the last 2 on the generator's
    assert not torch.allclose(photos, b[2:6])


def test_randconv_fraction_puts_the_share_after_the_photographs_on_two_colour_textures():
    cfg = tiny_config(black_fraction=0.25, real_fraction=0.25, randconv_fraction=0.25)
    alg = Adversarial(cfg, in_channels=3)
    x, m, b = torch.rand(8, 3, 32, 32), (torch.rand(8, 1, 32, 32) > 0.5).float(), torch.rand(8, 3, 32, 32)
    x[..., :4, :] = x[..., -4:, :] = x[..., :4] = x[..., -4:] = 0      # a black backdrop
    replay = torch.Generator()
    replay.set_state(alg.noise.get_state())
    out = alg.composite(x, m, b)
    photos = alg.source("real").draw(2, replay)
    textures = alg.source("randconv").draw(2, replay)          # drawn next from the same stream
    assert torch.equal(out[:2], x[:2] * m[:2])                  # 2 of 8 on black
    assert torch.equal(out[2:4], M.composite(x[2:4], m[2:4], photos))
    assert torch.equal(out[4:6], M.composite(x[4:6], m[4:6], textures))
    assert torch.equal(out[6:], M.composite(x[6:], m[6:], b[6:]))
    many = alg.source("randconv").draw(64, torch.Generator().manual_seed(1))
    for t in many:      # each texture is two colours (one per level), drawn per channel
        assert all(len(torch.unique(channel)) <= 2 for channel in t)
    # ...and covers structure from single pixels to blobs: neighbouring pixels agree more in some
    # textures than in others (white noise at 1 px through a 1x1 filter; 4 px through a 7x7 one).
    level = (many[:, :1] == many[:, :1].amax((-1, -2), keepdim=True)).float()
    agree = (level[..., 1:, :] == level[..., :-1, :]).float().mean((1, 2, 3))
    assert agree.min() < 0.75 and agree.max() > 0.9
    assert not torch.equal(many, alg.source("randconv").draw(64, torch.Generator().manual_seed(2)))


def test_the_game_builds_its_photograph_bank_when_a_share_is_on_photographs():
    cfg = tiny_config(mask="heuristic", epochs_f=1, epochs_adv=1, limit=128, real_fraction=0.5)
    from backdrop.data import load_dataset
    alg = train(cfg, load_dataset("digits", limit=128))
    assert list(alg.sources) == ["real"] and alg.sources["real"].bank is not None
    assert torch.isfinite(alg.predict(torch.rand(4, 1, 32, 32))).all()


def test_the_mixed_in_shares_cannot_exceed_the_batch():
    from backdrop.hparams import make_config
    with pytest.raises(UserError, match="'black_fraction' \\+ 'real_fraction' \\+ 'randconv_fraction' \\+ "
                                        "'replay_fraction' = 1.5 is more"):
        make_config({"black_fraction": 0.5, "real_fraction": 0.5, "randconv_fraction": 0.25, "replay_fraction": 0.25})


def test_replay_keeps_one_generated_background_per_step_and_composites_a_share_on_them():
    """The replay buffer fills with one generated background per game step, then replaces random
    old ones; composite puts its share of the batch on stored backgrounds; a checkpoint carries
    the buffer, so a resumed run replays what the interrupted one stored."""
    from backdrop.data import load_dataset
    from backdrop.train import Position, checkpoint_state, restore
    small = load_dataset("digits", limit=128)
    cfg = tiny_config(mask="heuristic", epochs_f=1, epochs_adv=2, limit=128, replay_fraction=0.25, replay_size=6)
    alg = train(cfg, small)
    steps = 2 * (128 // 32)
    assert int(alg.replay.stored) == steps
    stored = alg.replay.bank.flatten(1)
    assert (stored.abs().sum(1) > 0).all() and len(torch.unique(stored, dim=0)) == 6   # full, all different
    x, m, b = torch.rand(8, 1, 32, 32), (torch.rand(8, 1, 32, 32) > 0.5).float(), torch.rand(8, 1, 32, 32)
    out = alg.composite(x, m, b)
    replayed = [next(i for i in range(6) if torch.allclose(out[r], M.composite(x[r:r + 1], m[r:r + 1], alg.replay.bank[i:i + 1])[0]))
                for r in (0, 1)]                                 # 2 of 8 (a quarter) on stored backgrounds
    assert len(replayed) == 2
    assert torch.equal(out[2:], M.composite(x[2:], m[2:], b[2:]))
    fresh = Adversarial(cfg)
    restore(fresh, checkpoint_state(alg, Position(1, 2, 3)))
    assert torch.equal(fresh.replay.bank, alg.replay.bank) and int(fresh.replay.stored) == steps
    # a checkpoint written before the buffer was a module (keys replay, replay_stored) still loads
    old = {("replay" if k == "replay.bank" else "replay_stored" if k == "replay.stored" else k): v
           for k, v in alg.state_dict().items()}
    earlier = Adversarial(cfg)
    earlier.load_state_dict(old)
    assert torch.equal(earlier.replay.bank, alg.replay.bank) and int(earlier.replay.stored) == steps
    plain = Adversarial(tiny_config(mask="heuristic"))
    assert not any(k.startswith("replay") for k in plain.state_dict())    # model files without replay load as before


def test_averaged_f_follows_f_and_survives_a_checkpoint():
    """predict uses the running average of f's weights once the game has begun; the average is
    part of the state a checkpoint saves, so a resumed run continues it instead of restarting."""
    from backdrop.algorithms import place
    from backdrop.train import checkpoint_state, Position, restore
    cfg = tiny_config(method="adversarial", mask="heuristic", epochs_f=1, epochs_adv=1, limit=256,
                      f_average=0.9)
    from backdrop.data import load_dataset
    small = load_dataset("digits", limit=256)
    alg = train(cfg, small)
    steps = 256 // 32
    assert int(alg.f_avg_updates) == steps
    diffs = [(a - p).abs().max().item() for a, p in zip(alg.f_avg.parameters(), alg.f.parameters())]
    assert max(diffs) > 0                                       # an average, not a copy of f
    x = small.val.x[:16]
    assert torch.equal(alg.predict(x), alg.f_avg(x))
    fresh = place(Adversarial(cfg))         # the layout train() gives it: same kernels, same floats
    assert not torch.equal(fresh.predict(x), alg.predict(x))
    restore(fresh, checkpoint_state(alg, Position(1, 1, 2)))
    assert int(fresh.f_avg_updates) == steps and torch.equal(fresh.predict(x), alg.predict(x))


def test_random_symmetries_turn_each_background_by_one_of_the_eight_and_pass_gradients():
    from backdrop.backgrounds import random_symmetries
    b = torch.rand(64, 1, 6, 6, requires_grad=True)
    out = random_symmetries(b, torch.Generator().manual_seed(0))
    seen = set()
    for i in range(len(b)):
        t = b[i].transpose(-1, -2)
        views = [b[i], b[i].flip(-1), b[i].flip(-2), b[i].flip(-1, -2), t, t.flip(-1), t.flip(-2), t.flip(-1, -2)]
        hits = [k for k, v in enumerate(views) if torch.equal(out[i], v)]
        assert len(hits) == 1
        seen.add(hits[0])
    assert seen == set(range(8))                    # 64 draws: every symmetry turns up
    out.sum().backward()
    assert torch.equal(b.grad, torch.ones_like(b))  # a permutation of pixels: each gets gradient 1


def test_symmetric_backgrounds_turn_the_generators_own_backgrounds():
    alg = Adversarial(tiny_config(symmetric_backgrounds=True, tiles=1, noise_dim=4))
    replay = torch.Generator()
    replay.set_state(alg.noise.get_state())
    b = alg.backgrounds(16, "cpu", generator_live=False)
    with torch.no_grad():
        raw = alg.f_b(alg.f_b.sample_noise(16, replay))
    assert not torch.allclose(b, raw)
    for i in range(16):
        t = raw[i].transpose(-1, -2)
        views = [raw[i], raw[i].flip(-1), raw[i].flip(-2), raw[i].flip(-1, -2), t, t.flip(-1), t.flip(-2), t.flip(-1, -2)]
        assert any(torch.equal(b[i], v) for v in views)


def test_random_colours_map_each_channel_of_each_background_onto_a_range_of_its_own():
    from backdrop.backgrounds import random_colours
    pattern = (torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    b = pattern.expand(32, 3, 8, 8).clone().requires_grad_(True)
    out = random_colours(b, torch.Generator().manual_seed(0))
    assert out.shape == b.shape and 0 <= out.min() and out.max() <= 1
    on = out.detach()[:, :, pattern[0, 0] > 0]          # N x C x (pixels on)
    off = out.detach()[:, :, pattern[0, 0] == 0]
    # Two colours per image: every "on" pixel one colour, every "off" pixel another.
    assert torch.allclose(on, on[..., :1].expand_as(on)) and torch.allclose(off, off[..., :1].expand_as(off))
    colours = on[..., 0]                                 # N x C
    assert len({tuple(c.round(decimals=4).tolist()) for c in colours}) == 32     # drawn per image
    assert not torch.allclose(colours[:, 0], colours[:, 1])                      # and per channel
    assert ((on[..., 0] - off[..., 0]) < 0).any()        # some channels inverted (hi < lo)
    out.sum().backward()
    assert b.grad.abs().sum() > 0


def test_colour_backgrounds_recolour_the_generators_own_backgrounds():
    cfg = tiny_config(colour_backgrounds=True, tiles=1, noise_dim=4)
    alg = Adversarial(cfg)
    replay = torch.Generator()
    replay.set_state(alg.noise.get_state())
    b = alg.backgrounds(16, "cpu", generator_live=False)
    with torch.no_grad():
        raw = alg.f_b(alg.f_b.sample_noise(16, replay))
    ends = torch.rand((2, 16, raw.shape[1], 1, 1), generator=replay)
    assert not torch.allclose(b, raw)
    assert torch.allclose(b, ends[0] + (ends[1] - ends[0]) * raw, atol=1e-6)


def test_colour_extremes_draw_strongly_opposed_colours_far_more_often():
    from backdrop.backgrounds import random_colours
    pattern = torch.zeros(1, 1, 4, 4)
    pattern[..., :2, :] = 1.0
    b = pattern.expand(4000, 3, 4, 4)

    def far_apart(extremes):
        out = random_colours(b, torch.Generator().manual_seed(0), extremes)
        return ((out[:, :, 0, 0] - out[:, :, -1, 0]).abs() > 0.9).float().mean().item()

    assert far_apart(0.0) < 0.02 and far_apart(1.0) > 0.25       # ~1 % uniform, ~29 % opposed
    assert 0.1 < far_apart(0.5) < 0.2
    g, h = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    ends = torch.rand((2, 8, 3, 1, 1), generator=h)                # uniform ends, nothing more drawn
    assert torch.equal(random_colours(b[:8], g, 0.0), ends[0] + (ends[1] - ends[0]) * b[:8])
    assert torch.equal(g.get_state(), h.get_state())


def test_colour_extremes_recolour_the_generators_and_the_textures_backgrounds():
    cfg = tiny_config(colour_backgrounds=True, colour_extremes=1.0, randconv_fraction=0.25, tiles=1, noise_dim=4)
    alg = Adversarial(cfg, in_channels=3)
    replay = torch.Generator()
    replay.set_state(alg.noise.get_state())
    b = alg.backgrounds(16, "cpu", generator_live=False)
    with torch.no_grad():
        raw = alg.f_b(alg.f_b.sample_noise(16, replay))
    lo = torch.sin(torch.rand((2, 16, 3, 1, 1), generator=replay)[0] * (torch.pi / 2)) ** 2
    assert torch.allclose(b, lo + (1 - 2 * lo) * raw, atol=1e-6)          # ends lo and 1 - lo
    plain = Adversarial(tiny_config(randconv_fraction=0.25), in_channels=3).source("randconv")
    pushed, uniform = (src.draw(32, torch.Generator().manual_seed(1)) for src in (alg.source("randconv"), plain))
    assert not torch.equal(pushed, uniform)        # the same textures, in other colours


def test_colour_extremes_need_something_recoloured():
    from backdrop.hparams import make_config
    with pytest.raises(UserError, match="'colour_extremes' = 0.5 changes how backgrounds are recoloured"):
        make_config({"colour_extremes": 0.5})
    with pytest.raises(UserError, match="'colour_extremes'"):
        make_config({"colour_extremes": 0.5, "colour_backgrounds": True, "background": "real"})
    assert make_config({"colour_extremes": 0.5, "colour_backgrounds": True})["colour_extremes"] == 0.5
    assert make_config({"colour_extremes": 0.5, "randconv_fraction": 0.25})["colour_extremes"] == 0.5


def test_a_grid_tiles_each_image_in_its_place_with_white_gaps():
    from backdrop.figures import tile
    images = torch.arange(1, 11, dtype=torch.float32).div(20).view(10, 1, 1, 1).expand(10, 3, 4, 5)
    sheet = tile(images, ncol=4, gap=2)
    assert sheet.shape == (3, 3 * 4 + 2 * 2, 4 * 5 + 3 * 2)
    for k in range(10):
        r, q = divmod(k, 4)
        assert torch.equal(sheet[:, r * 6:r * 6 + 4, q * 7:q * 7 + 5], images[k])
    assert sheet[:, 4:6].eq(1).all() and sheet[:, :, 5:7].eq(1).all() and sheet[:, 12:, 14:].eq(1).all()


@pytest.mark.parametrize("background", ["real", "fixed"])
def test_a_model_rebuilt_from_its_file_draws_its_figures(tmp_path, background):
    """A model file (or a checkpoint) never runs begin_phase: its banks build on first use, and
    the fixed bank is the one the run trained with (drawn from the seed)."""
    from backdrop import figures
    from backdrop.api import load_model, save_model
    from backdrop.data import load_dataset
    cfg = tiny_config(method="adversarial", background=background, mask="heuristic", epochs_f=1, epochs_adv=1,
                      limit=64)
    trained = train(cfg, load_dataset("digits", limit=64))
    model = load_model(save_model(trained, tmp_path / "m.pt")).algorithm
    assert model.sources == {}
    paths = figures.run_figures(model, torch.rand(8, 1, 32, 32), tmp_path)
    assert {p.name for p in paths} == {"masks.png", "composites.png"} and all(p.is_file() for p in paths)
    if background == "fixed":
        assert torch.equal(model.source("fixed").prepare(), trained.source("fixed").bank)


def test_a_resumed_run_is_the_run_it_continues():
    """Stopped after epoch 2 and resumed from that epoch's checkpoint, a run ends with the same
    weights, bit for bit, as the run that never stopped: batches, augmentation and the game's
    noise all continue their streams (CPU, one thread)."""
    import copy

    from backdrop.data import load_dataset
    cfg = tiny_config(method="adversarial", augment=True, epochs_f=1, epochs_mask=1, epochs_adv=2, limit=96,
                      f_average=0.9, ascent_per_descent=0.5)
    data = load_dataset("digits", limit=96)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        saved = {}
        whole = train(cfg, data, on_epoch=lambda e: saved.setdefault(e.step, copy.deepcopy(e.checkpoint())))
        resumed = train(cfg, data, resume_state=saved[2])
    finally:
        torch.set_num_threads(threads)
    a, b = whole.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]
    assert not torch.equal(saved[2]["model"]["f.head.3.weight"], a["f.head.3.weight"])   # it did train on


def test_val_every_scores_fewer_epochs_and_trains_the_same_model():
    """Validation only reads the model: scoring every other epoch (and each phase's last) must
    leave the trained weights bit for bit those of a run that scored every epoch."""
    from backdrop.data import load_dataset
    small = load_dataset("digits", limit=128)
    runs = {}
    for every in (1, 2):
        scored = []
        cfg = tiny_config(method="adversarial", mask="heuristic", epochs_f=3, epochs_adv=2, limit=128,
                          val_every=every)
        alg = train(cfg, small, on_epoch=lambda end: scored.append((end.phase, end.epoch, bool(end.val))))
        runs[every] = (alg.state_dict(), scored)
    assert all(v for _, _, v in runs[1][1])
    assert runs[2][1] == [("classifier", 0, False), ("classifier", 1, True), ("classifier", 2, True),
                          ("adversarial", 0, False), ("adversarial", 1, True)]
    a, b = runs[1][0], runs[2][0]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_mask_phase_leaves_the_predictor_alone_and_carries_its_validation_over():
    """The mask phase trains f_m only (its phase says predictor_frozen): predict() stays bit for
    bit what the classifier phase left, so the loop reports that validation again instead of
    scoring the same predictor once per mask epoch."""
    from backdrop.data import load_dataset
    from backdrop.train import build_algorithm
    small = load_dataset("digits", limit=128)
    cfg = tiny_config(method="adversarial", epochs_f=1, epochs_mask=2, epochs_adv=1, limit=128)
    algorithm = build_algorithm(cfg, small)
    assert [p.name for p in algorithm.phases() if p.predictor_frozen] == ["mask"]
    predict, calls, seen = algorithm.predict, [], []

    def counted(x):
        calls.append(len(x))
        return predict(x)
    algorithm.predict = counted
    probe = small.val.x[:64]
    train(cfg, small, algorithm=algorithm,
          on_epoch=lambda end: seen.append((end.phase, len(calls), dict(end.val), predict(probe))))
    assert [s[0] for s in seen] == ["classifier", "mask", "mask", "adversarial"]
    for before, now in zip(seen[:2], seen[1:3]):                    # the two mask epochs
        assert now[1] == before[1] and now[2] == before[2] and torch.equal(now[3], before[3])
    assert seen[3][1] > seen[2][1] and not torch.equal(seen[3][3], seen[2][3])


def test_a_loaded_model_builds_no_optimiser(tmp_path):
    """Scoring or serving a model needs no Adam: the first one a process builds imports
    torch._dynamo (about 1.5 s), so the optimisers are made when training first steps."""
    import subprocess
    import sys

    from backdrop.api import save_model
    from backdrop.data import load_dataset
    cfg = tiny_config(method="adversarial", mask="heuristic", epochs_f=1, epochs_adv=1, limit=64)
    path = save_model(train(cfg, load_dataset("digits", limit=64)), tmp_path / "m.pt")
    probe = ("import sys, torch; from backdrop.api import load_model; m = load_model(sys.argv[1]); "
             "m(torch.rand(2, 1, 32, 32)); print(sorted(k for k in sys.modules if k.startswith('torch._dynamo'))[:1])")
    out = subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "[]", (out.stdout, out.stderr[-2000:])


def test_diversity_moves_only_the_generator_and_rewards_different_backgrounds():
    """The diversity reward reaches f_b alone: one fused game step moves f exactly as without it
    and f_b differently; a generator whose noise changes nothing scores 0; the k-ascent path
    (ascent_per_descent 2) takes it too."""
    from backdrop.algorithms import place
    x, y = torch.rand(8, 1, 32, 32), torch.randint(10, (8,))
    m = (x > 0.5).float()
    after = {}
    for weight in (0.0, 1.0):
        torch.manual_seed(0)
        alg = place(Adversarial(tiny_config(mask="heuristic", diversity=weight)))
        alg.train()
        losses = alg.update("adversarial", {"x": x, "y": y, "m": m})
        after[weight] = ({k: v.clone() for k, v in alg.f.state_dict().items()},
                         {k: v.clone() for k, v in alg.f_b.state_dict().items()}, losses)
    assert all(torch.equal(after[0.0][0][k], after[1.0][0][k]) for k in after[0.0][0])
    assert any(not torch.equal(after[0.0][1][k], after[1.0][1][k]) for k in after[0.0][1])
    assert after[1.0][2]["diversity"] > 0 and "diversity" not in after[0.0][2]
    flat = Adversarial(tiny_config(mask="heuristic", diversity=1.0))
    with torch.no_grad():
        for p in flat.f_b.parameters():
            p.zero_()                                           # sigmoid(0) = 0.5 for every z
    assert flat.diversity("cpu").item() == 0.0
    two = Adversarial(tiny_config(mask="heuristic", diversity=1.0, ascent_per_descent=2.0))
    two.train()
    assert "loss_b" in two.update("adversarial", {"x": x, "y": y, "m": m})


def test_replay_and_diversity_need_the_adversary_and_model_files_leave_the_buffer_out(tmp_path):
    from backdrop.api import load_model, save_model
    from backdrop.hparams import make_config
    for key, value in (("replay_fraction", 0.25), ("diversity", 0.25), ("generator_scales", 2)):
        with pytest.raises(UserError, match=f"'{key}' acts on the adversarial generator"):
            make_config({key: value, "background": "noise"})
    alg = Adversarial(tiny_config(mask="heuristic", replay_fraction=0.25, replay_size=4))
    path = save_model(alg, tmp_path / "m.pt")
    assert not any(k.startswith("replay") for k in torch.load(path, weights_only=True)["state"])
    x = torch.rand(2, 1, 32, 32)
    assert torch.allclose(load_model(path)(x), alg.eval().predict(x), atol=1e-5)

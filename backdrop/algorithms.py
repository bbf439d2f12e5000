"""The registry of methods. Each is an `Algorithm`: a list of phases, one `update_<phase>(batch)
-> losses` function per phase, and `predict(x) -> logits`. The training loop (train.py) is shared.

A batch is a dict: `x` (N×C×H×W in [0, 1], already augmented), `y` (labels) and, where the phase
asked for per-image masks in `begin_phase`, `m` (the masks, augmented with the same geometry).
"""
import copy
import warnings
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import masks as M
from .background_sources import SOURCES, ReplayBuffer, mix
from .errors import UserError
from .keying import key
from .models import AGCNN, BackgroundGenerator, Classifier, MultiScaleGenerator, UNet
from .registry import registrar
from .shards import map_in_shards

ALGORITHMS = {}
register = registrar(ALGORITHMS)
MASK_CHECK_IMAGES = 1024      # the game's masks checked against the keyed object on this many images


def get_algorithm(name):
    if name not in ALGORITHMS:
        raise UserError(f"unknown method '{name}'; choose from {', '.join(ALGORITHMS)}")
    return ALGORITHMS[name]


def place(algorithm, device="cpu"):
    """Move an algorithm to `device` with its convolution weights in channels-last layout: with
    1-3 channel images and widths of 16-128, PyTorch's channels-last convolutions run the
    classifier step 1.5x, the game step 1.4x and inference 3x faster on a CPU (measured on one
    thread; docs/RESULTS.md, *Where a seed's time goes*). Inputs may stay NCHW; the state_dict is unchanged."""
    return algorithm.to(device, memory_format=torch.channels_last)


@dataclass(frozen=True)
class Phase:
    name: str
    epochs: int
    images: int = 0         # train on the first N training images only (0 = all)
    # The phase never changes what predict() returns (it trains other networks only), so the
    # loop carries the last validation over instead of scoring the same predictor again.
    predictor_frozen: bool = False


class GradReverse(torch.autograd.Function):
    """Identity forward, negated gradient backward: lets one backward pass make `f` descend and
    `f_b` ascend the same loss (the ascent:descent = 1 case of the game)."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return -g


@contextmanager
def frozen(*modules):
    """No weight gradients for these modules inside the block (they still pass gradients through)."""
    params = [p for m in modules for p in m.parameters()]
    saved = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, s in zip(params, saved):
            p.requires_grad_(s)


class Algorithm(nn.Module):
    """Base: holds the networks (as submodules) and one Adam optimiser per trained network, made
    on first use: an algorithm that is only scored or served never builds them (the first Adam
    built in a process imports torch._dynamo, about 1.5 s).

    `distribute(wrap)` lets Ray Train wrap each trained network in DDP on its own; `live(name)`
    returns the wrapped network for steps that train it, while frozen players are called plain
    so DDP never waits for gradients that a step does not produce."""

    def __init__(self, cfg, in_channels=1, n_classes=10, size=32):
        super().__init__()
        self.cfg, self.in_channels, self.n_classes, self.size = cfg, in_channels, n_classes, size
        self.class_names = tuple(str(k) for k in range(n_classes))    # the data set's, once built for it
        self.learning_rates = {}          # trained network -> its optimiser's learning rate
        self._optimizers = None
        self._wrapped = {}

    def add_optimizer(self, net_name, lr):
        self.learning_rates[net_name] = lr

    @property
    def optimizers(self):
        if self._optimizers is None:
            self._optimizers = {n: torch.optim.Adam(getattr(self, n).parameters(), lr=lr)
                                for n, lr in self.learning_rates.items()}
        return self._optimizers

    def distribute(self, wrap):
        for name in self.learning_rates:
            self._wrapped[name] = wrap(getattr(self, name))

    def live(self, name):
        return self._wrapped.get(name, getattr(self, name))

    def step_optimizers(self, *net_names):
        for n in net_names:
            self.optimizers[n].step()

    def zero_grad_all(self):
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)

    @staticmethod
    def schedule(cfg) -> list:
        """The phases a config trains, in order; from the config alone (no networks needed)."""
        raise NotImplementedError

    def phases(self):
        return self.schedule(self.cfg)

    def begin_phase(self, phase, train_x):
        """Called once before a phase; may return per-image masks (N×1×H×W) for its batches."""
        return None

    def update(self, phase, batch):
        self.zero_grad_all()
        return getattr(self, f"update_{phase}")(batch)

    @torch.no_grad()
    def predict(self, x):
        raise NotImplementedError

    def figures(self, x, out_dir):
        """PNG pictures the method draws of itself on a few images x; their paths (none here)."""
        return []

    # State beyond weights and optimisers that a checkpoint must carry for a resumed run to be the
    # run it continues (random streams, counters), and a DDP rank's own streams.
    def training_state(self) -> dict:
        return {}

    def load_training_state(self, state: dict):
        pass

    def reseed(self, rank: int, step: int):
        """Give DDP rank `rank` (> 0) its own random streams, from the run's seed and the step."""

    def optimizer_state(self):
        return {k: o.state_dict() for k, o in self.optimizers.items()}

    def load_optimizer_state(self, state):
        for k, s in state.items():
            self.optimizers[k].load_state_dict(s)


@register("vanilla")
class Vanilla(Algorithm):
    """The plain CNN: cross-entropy on the (augmented) training images."""

    def __init__(self, cfg, in_channels=1, n_classes=10, size=32):
        super().__init__(cfg, in_channels, n_classes, size)
        self.f = Classifier(in_channels, n_classes, cfg["widths"], cfg["dense"], size)
        self.add_optimizer("f", cfg["lr_f"])

    @staticmethod
    def schedule(cfg):
        return [Phase("classifier", cfg["epochs_f"])]

    def update_classifier(self, batch):
        loss = F.cross_entropy(self.live("f")(batch["x"]), batch["y"])
        loss.backward()
        self.step_optimizers("f")
        return {"loss_f": loss.item()}

    @torch.no_grad()
    def predict(self, x):
        return self.f(x)


@register("attention")
class Attention(Algorithm):
    """AG-CNN: global and fused (global + cropped local) heads trained together with CE each."""

    def __init__(self, cfg, in_channels=1, n_classes=10, size=32):
        super().__init__(cfg, in_channels, n_classes, size)
        self.f = AGCNN(in_channels, n_classes, cfg["widths"], cfg["dense"], size, cfg["tau"])
        self.add_optimizer("f", cfg["lr_f"])

    @staticmethod
    def schedule(cfg):
        return [Phase("attention", cfg["epochs_f"])]

    def update_attention(self, batch):
        global_logits, fused = self.live("f")(batch["x"])
        loss_g = F.cross_entropy(global_logits, batch["y"])
        loss_fused = F.cross_entropy(fused, batch["y"])
        (loss_g + loss_fused).backward()
        self.step_optimizers("f")
        return {"loss_global": loss_g.item(), "loss_fused": loss_fused.item()}

    @torch.no_grad()
    def predict(self, x):
        return self.f(x)[1]


@register("adversarial")
class Adversarial(Algorithm):
    """The method: classifier `f`, mask U-Net `f_m`, background generator `f_b` (METHOD.md).

    phased:     1 `classifier` (f on clean data), 2 `mask` (f_m, f frozen), 3 `adversarial`
                (f vs f_b on composites, f_m frozen: each image's mask is computed once).
    end_to_end: 1 `classifier`, then `end_to_end` (f and f_m descend, f_b ascends).
    `ascent_per_descent` sets how many f_b steps go with each f step; at exactly 1 the two share
    one forward/backward through a gradient-reversal layer."""

    def __init__(self, cfg, in_channels=1, n_classes=10, size=32):
        super().__init__(cfg, in_channels, n_classes, size)
        self.f = Classifier(in_channels, n_classes, cfg["widths"], cfg["dense"], size)
        self.f_m = UNet(in_channels, cfg["widths"])
        if cfg["generator_scales"] > 1:
            self.f_b = MultiScaleGenerator(cfg["noise_dim"], cfg["tiles"], size, in_channels, cfg["gen_width"],
                                           cfg["generator_scales"])
        else:
            self.f_b = BackgroundGenerator(cfg["noise_dim"], cfg["tiles"], size, in_channels, cfg["gen_width"])
        self.add_optimizer("f", cfg["lr_f"])
        if cfg["mask"] == "unet":
            self.add_optimizer("f_m", cfg["lr_m"])
        if cfg["background"] == "adv":
            self.add_optimizer("f_b", cfg["lr_b"])
        self.ascent_credit = 0.0
        self.mask_check = {}      # the game's masks against the keyed object (check_masks)
        self.sources = {}
        self.noise = torch.Generator().manual_seed(cfg["seed"] + 1)
        self.replay = ReplayBuffer(cfg["replay_size"], in_channels, size) if cfg["replay_fraction"] > 0 else None
        if cfg["f_average"] > 0:
            # A submodule and a buffer, so checkpoints carry the average and a resumed run goes on.
            self.f_avg = copy.deepcopy(self.f).requires_grad_(False)
            self.register_buffer("f_avg_updates", torch.zeros((), dtype=torch.long))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Checkpoints written before the replay buffer was a module of its own name its tensors
        # `replay` and `replay_stored`: a run resumed from one goes on with its buffer.
        for old, new in (("replay", "replay.bank"), ("replay_stored", "replay.stored")):
            if prefix + old in state_dict:
                state_dict[prefix + new] = state_dict.pop(prefix + old)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @staticmethod
    def schedule(c):
        mask_epochs = c["epochs_mask"] if c["mask"] == "unet" else 0
        if c["schedule"] == "end_to_end":
            return [Phase("classifier", c["epochs_f"]), Phase("end_to_end", c["epochs_adv"])]
        # The U-Net is the CPU bottleneck, and a subset of the images suffices for masks.
        return [Phase("classifier", c["epochs_f"]),
                Phase("mask", mask_epochs, c["mask_images"], predictor_frozen=True),
                Phase("adversarial", c["epochs_adv"])]

    # ---- pieces shared by the phases ----
    def mask_of(self, x):
        """The (binarised) mask the adversarial phase composites with, without gradients."""
        return M.MASK_SOURCES[self.cfg["mask"]](self, x)

    def mask_penalty(self, m):
        c = self.cfg
        return (M.area_penalty(m, c["mask_area"], c["mask_area_loss"] == "squared")
                + c["mask_tv"] * M.total_variation(m))

    def white_penalty(self, b):
        # Grayscale only (METHOD.md): stops f_b from winning by painting everything white.
        if not self.cfg["white_penalty"] or b.shape[1] != 1:
            return b.new_zeros(())
        return torch.relu(b.mean() - 0.5)

    def composite(self, x, m, b):
        """x̃ = m̂⊙x + (1−m̂)⊙b̂, on the mix of backgrounds the config asks for (the plain backdrop,
        photographs and replayed shares: background_sources.mix)."""
        return M.composite(x, m, mix(b, self.cfg, self.noise, self.source, self.replay, x=x))

    def after_descent(self, b):
        """After each descent step of f: its weight average, and the replay buffer keeps one of
        the step's generated backgrounds."""
        self.update_average()
        if self.replay is not None:
            self.replay.remember(b, self.noise)

    @torch.no_grad()
    def update_average(self):
        """After each descent step of f in the game: the average of f's recent weights. The
        game's iterates oscillate (val accuracy moves by points from epoch to epoch); averaged
        iterates are the classic remedy for min-max games."""
        if self.cfg["f_average"] <= 0:
            return
        d = self.cfg["f_average"] if self.f_avg_updates > 0 else 0.0   # the first update copies f
        for a, p in zip(self.f_avg.parameters(), self.f.parameters()):
            a.lerp_(p, 1.0 - d)
        for a, p in zip(self.f_avg.buffers(), self.f.buffers()):
            a.copy_(p)
        self.f_avg_updates += 1

    def backgrounds(self, n, device, generator_live=True):
        mode = self.cfg["background"]
        if mode != "adv":
            return self.source(mode).draw(n, self.noise).to(device)
        net = self.live("f_b") if generator_live else self.f_b
        b = net(self.f_b.sample_noise(n, self.noise).to(device))
        if self.cfg["symmetric_backgrounds"]:
            # One generator explores one orientation at a time; what f learns to ignore
            # should not depend on which one it happened to find (docs/RESULTS.md, stripes).
            from .backgrounds import random_symmetries
            b = random_symmetries(b, self.noise)
        if self.cfg["colour_backgrounds"]:
            # One generator settles on one palette, and f then falls on a plain wall of a colour
            # it never met (docs/RESULTS.md, Why clock is near chance); the world uses any colours.
            from .backgrounds import random_colours
            b = random_colours(b, self.noise, self.cfg["colour_extremes"])
        return b

    def source(self, name):
        """The named background source (background_sources.SOURCES), made on first use."""
        if name not in self.sources:
            self.sources[name] = SOURCES[name](self.cfg, self.in_channels, self.size)
        return self.sources[name]

    def sources_in_use(self):
        names = {self.cfg["background"]} - {"adv"}
        shares = {name for name, key in (("real", "real_fraction"), ("randconv", "randconv_fraction"))
                  if self.cfg[key] > 0}
        return sorted(names | shares)

    DIVERSITY_PAIRS = 16

    def diversity(self, device):
        """DSGAN's term (Yang et al., ICLR 2019): how far apart f_b's backgrounds are per unit of
        noise distance, over fresh noise pairs. f_b maximises it (weight `diversity`), so its
        noise keeps choosing between patterns instead of the game settling on a few. The plain
        module is called: its gradients join the step's own in the parameters' accumulators,
        and DDP's wrapped module is never run twice in one step."""
        k = self.DIVERSITY_PAIRS
        z = self.f_b.sample_noise(2 * k, self.noise).to(device)
        b = self.f_b(z)
        gap_b = (b[:k] - b[k:]).abs().flatten(1).mean(1)
        zs = z.reshape(2 * k, -1)                      # each image's tiles' noise, in order
        gap_z = (zs[:k] - zs[k:]).abs().mean(1)
        return (gap_b / gap_z).mean()

    def training_state(self):
        return {"ascent_credit": self.ascent_credit, "noise_rng": self.noise.get_state()}

    def load_training_state(self, state):
        if state.get("noise_rng") is not None:
            self.noise.set_state(state["noise_rng"])
        self.ascent_credit = state.get("ascent_credit", 0.0)

    def reseed(self, rank, step):
        # With the model's one noise seed every worker would paint the same backgrounds on its
        # shard, shrinking the adversary's batch by the world size.
        self.noise.manual_seed(self.cfg["seed"] + 1 + 1_000_003 * rank + step)

    def ascents_due(self):
        """How many f_b steps go with this f step (ascent_per_descent may be fractional)."""
        self.ascent_credit += self.cfg["ascent_per_descent"]
        k = int(self.ascent_credit)
        self.ascent_credit -= k
        return k

    def begin_phase(self, phase, train_x):
        if phase in ("adversarial", "end_to_end"):
            for name in self.sources_in_use():
                self.source(name).prepare()
        if phase == "adversarial" and self.cfg["mask"] == "unet":
            # f_m is frozen in this phase: compute every image's mask once, on the un-augmented
            # image; the loop then transforms each mask together with its image. Under DDP every
            # rank needs every mask (batches are reshuffled each epoch), so the ranks split the
            # work and swap results.
            self.f_m.eval()
            masks = map_in_shards(self.mask_of, train_x)
            self.f_m.train()
            self.check_masks(masks[:MASK_CHECK_IMAGES], train_x[:MASK_CHECK_IMAGES])
            return masks
        return None

    def check_masks(self, masks, x):
        """The frozen masks the game composites with, against the keyed object: logged with every
        game epoch, and a warning when they lie on the backdrop (or nowhere) rather than on the
        object, for then the game paints its backgrounds over the object and f learns nothing
        of what it must ignore."""
        self.mask_check = M.polarity(masks, key(x))
        on, share = self.mask_check["mask_on_object"], self.mask_check["object_share"]
        if on <= share:
            warnings.warn(f"the mask U-Net's masks are not on the object: {100 * on:.0f} % of their area is on "
                          f"the keyed object, which covers {100 * share:.0f} % of the image (a mask blind to the "
                          f"object scores that); the game will composite over the object. Check masks.png; "
                          f"try another seed, a lower lr_m or mask: heuristic", RuntimeWarning, stacklevel=2)

    # ---- one function per phase ----
    def update_classifier(self, batch):
        loss = F.cross_entropy(self.live("f")(batch["x"]), batch["y"])
        loss.backward()
        self.step_optimizers("f")
        return {"loss_f": loss.item()}

    def update_mask(self, batch):
        x, y = batch["x"], batch["y"]
        keyed = key(x)                  # once a step: for the fill and for the polarity check
        m = self.live("f_m")(x)
        with frozen(self.f):
            ce = F.cross_entropy(self.f(M.lift_object(keyed, m, self.cfg["mask_fill"])), y)
        penalty = self.mask_penalty(m)
        (ce + penalty).backward()
        self.step_optimizers("f_m")
        return {"loss_mask_ce": ce.item(), "loss_mask_penalty": penalty.item(), "mask_mean": m.mean().item(),
                **M.polarity(m.detach(), keyed)}

    def update_adversarial(self, batch):
        x, y = batch["x"], batch["y"]
        m = batch["m"] if "m" in batch else self.mask_of(x)
        return {**self.play(x, y, lambda: m, with_mask_loss=False), **self.mask_check}

    def update_end_to_end(self, batch):
        x, y = batch["x"], batch["y"]
        if self.cfg["mask"] != "unet":
            m = self.mask_of(x)
            return self.play(x, y, lambda: m, with_mask_loss=False)

        def live_mask():
            soft = self.live("f_m")(x)
            hard = M.binarize(soft.detach(), self.cfg["binarize"], self.cfg["mask_area"])
            return soft + (hard - soft).detach(), soft        # straight-through binarisation
        return self.play(x, y, live_mask, with_mask_loss=True)

    def play(self, x, y, mask_fn, with_mask_loss):
        """One descent step of f (and f_m when `with_mask_loss`) and its due ascent steps of f_b."""
        adversary = self.cfg["background"] == "adv"
        k = self.ascents_due() if adversary else 0
        descend = ["f"] + (["f_m"] if with_mask_loss else [])
        out = mask_fn()
        m, soft = out if isinstance(out, tuple) else (out, out)
        losses = {}
        if adversary and k == 1 and self.cfg["ascent_per_descent"] == 1.0:
            # Fused: one forward/backward; the reversal layer turns f's descent into f_b's ascent.
            b = self.backgrounds(len(x), x.device)
            ce = F.cross_entropy(self.live("f")(self.composite(x, m, GradReverse.apply(b))), y)
            white = self.white_penalty(b)
            total = ce + white + (self.mask_penalty(soft) if with_mask_loss else 0)
            if self.cfg["diversity"] > 0:
                div = self.diversity(x.device)
                total = total - self.cfg["diversity"] * div      # only f_b's weights reach it
                losses["diversity"] = div.item()
            total.backward()
            self.step_optimizers(*descend, "f_b")
            self.after_descent(b)
            losses.update(loss_f=ce.item(), loss_b=-ce.item() + white.item())
        else:
            with torch.no_grad():
                b = self.backgrounds(len(x), x.device, generator_live=False)
            ce = F.cross_entropy(self.live("f")(self.composite(x, m, b)), y)
            total = ce + (self.mask_penalty(soft) if with_mask_loss else 0)
            total.backward()
            self.step_optimizers(*descend)
            self.after_descent(b)
            losses["loss_f"] = ce.item()
            for _ in range(k):
                losses["loss_b"], div = self.ascend(x, y, m.detach())
                if div is not None:
                    losses["diversity"] = div
        if with_mask_loss:
            losses.update(mask_mean=soft.mean().item(), **M.polarity(soft.detach(), key(x)))
        return losses

    def ascend(self, x, y, m):
        """One step of f_b maximising the classifier's loss, with f frozen: (its loss without the
        diversity reward, as the fused step logs it; the diversity, or None)."""
        self.optimizers["f_b"].zero_grad(set_to_none=True)
        b = self.backgrounds(len(x), x.device)
        with frozen(self.f):
            ce = F.cross_entropy(self.f(self.composite(x, m, b)), y)
        loss = -ce + self.white_penalty(b)
        div = self.diversity(x.device) if self.cfg["diversity"] > 0 else None
        (loss - self.cfg["diversity"] * div if div is not None else loss).backward()
        self.step_optimizers("f_b")
        return loss.item(), (div.item() if div is not None else None)

    @torch.no_grad()
    def figures(self, x, out_dir):
        """Its masks, composites and (for the adversary) generated backgrounds."""
        from .figures import image_grid
        m = self.mask_of(x)
        mode = self.cfg["background"]
        b = self.backgrounds(len(x), x.device, generator_live=False) if mode != "black" else torch.zeros_like(x)
        paths = [image_grid(b, out_dir / "backgrounds.png", "generated backgrounds f_b(z)")] if mode == "adv" else []
        return paths + [image_grid(m, out_dir / "masks.png", "masks"),
                        image_grid(M.composite(x, m, b), out_dir / "composites.png", "composites m*x + (1-m)*b")]

    @torch.no_grad()
    def predict(self, x):
        if self.cfg["f_average"] > 0 and self.f_avg_updates > 0:
            return self.f_avg(x)
        return self.f(x)

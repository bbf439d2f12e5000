"""Where the game's backgrounds come from when they are not the adversary's: each source is a small
named entry that draws n backgrounds from the caller's noise stream. A new source is an entry
here (and a choice of `background` in hparams.py), not an edit of the game. The adversary's own
backgrounds (`background: adv`) belong to the game (algorithms.Adversarial); what the game mixes
into a batch besides them — black, photographed, random-convolution and replayed shares (`mix`,
`ReplayBuffer`) — is at the end of this module.

A source builds any state it needs from the run's seed on first use, so a model rebuilt from a
checkpoint or a model file draws the same backgrounds as the run that trained it."""
import torch
import torch.nn.functional as F

from .keying import keyed_backdrop
from .registry import registrar

SOURCES = {}
source = registrar(SOURCES)


class BackgroundSource:
    def __init__(self, cfg, channels, size):
        self.cfg, self.channels, self.size = cfg, channels, size

    def prepare(self):
        """Build costly state now (before the game's first step, where it costs no step time)."""

    def draw(self, n: int, noise: torch.Generator) -> torch.Tensor:
        """n backgrounds, n x C x S x S in [0, 1], on the CPU."""
        raise NotImplementedError


@source("black")
class Black(BackgroundSource):
    def draw(self, n, noise):
        return torch.zeros(n, self.channels, self.size, self.size)


@source("noise")
class UniformNoise(BackgroundSource):
    def draw(self, n, noise):
        return torch.rand((n, self.channels, self.size, self.size), generator=noise)


@source("real")
class Photographs(BackgroundSource):
    """Random crops of the bundled photographs (backgrounds.TextureBank)."""
    bank = None

    def prepare(self):
        if self.bank is None:
            from .backgrounds import TextureBank
            self.bank = TextureBank(self.size, self.channels, seed=self.cfg["seed"])
        return self.bank

    def draw(self, n, noise):
        return self.prepare().sample(n, noise)


@source("fixed")
class FixedBank(BackgroundSource):
    """`fixed_bank_size` backgrounds of smooth random noise at several scales, drawn once from the
    seed and never updated: variety without an adversary."""
    bank = None

    def prepare(self):
        if self.bank is None:
            g = torch.Generator().manual_seed(self.cfg["seed"] + 2)
            k = self.cfg["fixed_bank_size"]
            parts = []
            for i, side in enumerate((4, 8, 16, self.size)):
                low = torch.rand(k // 4 + (i < k % 4), self.channels, side, side, generator=g)
                parts.append(F.interpolate(low, size=self.size, mode="bilinear", align_corners=False))
            self.bank = torch.cat(parts)
        return self.bank

    def draw(self, n, noise):
        bank = self.prepare()
        return bank[torch.randint(len(bank), (n,), generator=noise)]


@source("randconv")
class RandomConvolutions(BackgroundSource):
    """Fine two-colour structure the adversary's coarse tiles rarely draw: white noise at a random
    scale (1, 2 or 4 px), through a random k x k filter (k in 1, 3, 5, 7; RandConv, Xu et al.,
    ICLR 2021), then cut into two levels, either at a random quantile (speckle, blobs, streaks)
    or as a narrow band around one (thin contour lines), and drawn in two random colours per
    channel as `colour_backgrounds` draws the generator's (`colour_extremes` of them in opposed
    colours). A cheap, non-adversarial share of local texture (`randconv_fraction`)."""
    SCALES, KERNELS = (1, 2, 4), (1, 3, 5, 7)

    def draw(self, n, noise):
        from .backgrounds import random_colours
        S = self.size
        out = torch.empty(n, 1, S, S)
        for i in range(n):
            s = self.SCALES[int(torch.randint(len(self.SCALES), (1,), generator=noise))]
            k = self.KERNELS[int(torch.randint(len(self.KERNELS), (1,), generator=noise))]
            v = torch.randn((1, 1, -(-S // s), -(-S // s)), generator=noise)
            v = F.interpolate(v, scale_factor=s, mode="bilinear", align_corners=False)[..., :S, :S] if s > 1 else v
            w = torch.randn((1, 1, k, k), generator=noise)
            v = F.conv2d(F.pad(v, (k // 2,) * 4, mode="circular"), w).flatten()
            q = float(torch.empty(()).uniform_(0.2, 0.8, generator=noise))
            level = v.quantile(q)
            if float(torch.rand((), generator=noise)) < 0.5:
                on = v > level                                   # regions
            else:
                band = float(torch.empty(()).uniform_(0.05, 0.3, generator=noise)) * v.std()
                on = (v - level).abs() < band                    # lines along a level set
            out[i, 0] = on.view(S, S).float()
        return random_colours(out.expand(n, self.channels, S, S), noise, self.cfg["colour_extremes"])


# ---------------------------------------------------------------- what the game mixes in

class ReplayBuffer(torch.nn.Module):
    """Past generated backgrounds that `f` keeps training on (`replay_fraction` of each batch),
    so it does not forget patterns the generator has moved away from. One is kept per game step,
    over a random old one once the buffer is full: that spreads the buffer's age over epochs
    (half of it older than ~1,400 steps at 2,048), where a FIFO of recent batches would only echo
    the current generator. Its tensors are buffers, so a checkpoint carries them and a resumed run
    goes on; model files leave them out (api.TRAINING_ONLY)."""

    def __init__(self, size, channels, px):
        super().__init__()
        self.register_buffer("bank", torch.zeros(size, channels, px, px))
        self.register_buffer("stored", torch.zeros((), dtype=torch.long))

    def filled(self):
        return min(int(self.stored), len(self.bank))

    @torch.no_grad()
    def remember(self, b, noise):
        """Keep the batch's last background (never a mixed-in share: mix puts those first)."""
        n = int(self.stored)
        slot = n if n < len(self.bank) else int(torch.randint(len(self.bank), (1,), generator=noise))
        self.bank[slot] = b[-1].detach()
        self.stored += 1

    def draw(self, n, noise):
        return self.bank[torch.randint(self.filled(), (n,), generator=noise)]


def mix(b, cfg, noise, sources, replay=None, x=None):
    """The batch's backgrounds as the config mixes them: its first `black_fraction` rows the plain
    studio backdrop (keyed from the images `x`: black on a black backdrop; black without `x`), so
    f keeps seeing its objects on the surround of the clean data; the next `real_fraction` crops
    of photographs (`sources("real")`); the next `randconv_fraction` random-convolution textures
    (`sources("randconv")`); the next `replay_fraction` past generated backgrounds
    (`replay`; none before the first is stored); the rest `b` (batches are random permutations,
    so each share is a random subset)."""
    k_black = round(len(b) * cfg["black_fraction"])
    k_real = round(len(b) * cfg["real_fraction"])
    k_conv = round(len(b) * cfg["randconv_fraction"])
    k_replay = round(len(b) * cfg["replay_fraction"]) if replay is not None and replay.filled() else 0
    if not (k_black or k_real or k_conv or k_replay):
        return b
    parts = [keyed_backdrop(x[:k_black]).to(b.dtype) if x is not None else torch.zeros_like(b[:k_black])]
    if k_real:
        parts.append(sources("real").draw(k_real, noise).to(b.device, b.dtype))
    if k_conv:
        parts.append(sources("randconv").draw(k_conv, noise).to(b.device, b.dtype))
    if k_replay:
        parts.append(replay.draw(k_replay, noise).to(b.dtype))
    return torch.cat(parts + [b[k_black + k_real + k_conv + k_replay:]])

"""Where the game's backgrounds come from when they are not the adversary's: each source is a small
named entry that draws n backgrounds from the caller's noise stream. A new source is an entry
here (and a choice of `background` in hparams.py), not an edit of the game. The adversary's own
backgrounds (`background: adv`) belong to the game: algorithms.Adversarial.

A source builds any state it needs from the run's seed on first use, so a model rebuilt from a
checkpoint or a model file draws the same backgrounds as the run that trained it."""
import torch
import torch.nn.functional as F

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

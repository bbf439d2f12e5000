"""The networks of METHOD.md: classifier `f`, mask U-Net `f_m`, background generator `f_b`,
and the attention baseline (AG-CNN). Widths are parameters; defaults follow the paper."""
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from skimage.measure import label as label_regions


def conv_block(c_in, c_out):
    """3×3 conv + ReLU: the VGG-style unit shared by the classifier and the U-Net."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(inplace=True))


class Classifier(nn.Module):
    """VGG-style `f`: conv blocks (32, 64, 128) each followed by 2×2 max-pool, down to 4×4,
    then dense 128 and the output layer."""

    def __init__(self, in_channels=1, n_classes=10, widths=(32, 64, 128), dense=128, size=32):
        super().__init__()
        layers, c = [], in_channels
        for w in widths:
            layers += [conv_block(c, w), nn.MaxPool2d(2)]
            c = w
        self.features = nn.Sequential(*layers)
        side = size // 2 ** len(widths)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(c * side * side, dense),
                                  nn.ReLU(inplace=True), nn.Linear(dense, n_classes))

    def forward(self, x):
        return self.head(self.features(x))


class UNet(nn.Module):
    """Mask generator `f_m`: three down blocks (conv, then 2×2 max-pool) whose outputs are the
    skips, a bottleneck conv, three up blocks (2× upsample, conv, concat skip), and a 1×1 conv +
    sigmoid: m̂ ∈ [0, 1]."""

    def __init__(self, in_channels=1, widths=(32, 64, 128)):
        super().__init__()
        self.down = nn.ModuleList()
        c = in_channels
        for w in widths:
            self.down.append(conv_block(c, w))
            c = w
        self.bottleneck = conv_block(c, c)
        self.up = nn.ModuleList()
        for w in reversed(widths):
            self.up.append(conv_block(c, w))
            c = 2 * w                                   # after concatenating the skip
        self.out = nn.Conv2d(c, 1, 1)

    def forward(self, x):
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bottleneck(x)
        for up, skip in zip(self.up, reversed(skips)):
            x = torch.cat([up(F.interpolate(x, scale_factor=2, mode="nearest")), skip], 1)
        return torch.sigmoid(self.out(x))


class BackgroundGenerator(nn.Module):
    """Adversary `f_b`: noise → background. The image is `tiles × tiles` tiles, each generated
    from its own noise map of shape (noise_dim, 4, 4) through conv + 2× upsampling stages
    (LeakyReLU 0.2) and a 1×1 conv + sigmoid. For MNIST (32 px, 2 tiles) a tile is 16 px: two
    upsampling stages; noise_dim=1 gives the paper's 16-value `z` per tile."""

    seed_side = 4

    def __init__(self, noise_dim=1, tiles=2, size=32, out_channels=1, width=16):
        super().__init__()
        tile = size // tiles
        if tile * tiles != size or tile % self.seed_side or (tile // self.seed_side) & (tile // self.seed_side - 1):
            raise ValueError(f"size {size} / tiles {tiles} must give a tile of 4·2^k pixels")
        self.noise_dim, self.tiles, self.out_channels = noise_dim, tiles, out_channels
        stages = int(np.log2(tile // self.seed_side))
        layers, c = [nn.Conv2d(noise_dim, width, 3, padding=1), nn.LeakyReLU(0.2)], width
        for _ in range(stages):
            layers += [nn.Upsample(scale_factor=2, mode="nearest"),
                       nn.Conv2d(c, width, 3, padding=1), nn.LeakyReLU(0.2)]
        layers += [nn.Conv2d(width, out_channels, 1), nn.Sigmoid()]
        self.net = nn.Sequential(*layers)

    def sample_noise(self, n, generator=None, device=None):
        return torch.randn(n * self.tiles ** 2, self.noise_dim, self.seed_side, self.seed_side,
                           generator=generator, device=device)

    def forward(self, z):
        t = self.tiles
        tiles = self.net(z)                                  # (n·t·t) × C × h × w
        n, (c, h, w) = tiles.shape[0] // (t * t), tiles.shape[1:]
        # Arrange each image's t·t tiles row-major into one (t·h) × (t·w) background.
        return tiles.view(n, t, t, c, h, w).permute(0, 3, 1, 4, 2, 5).reshape(n, c, t * h, t * w)

    def generate(self, n, generator=None, device=None):
        return self(self.sample_noise(n, generator, device))


class MultiScaleGenerator(nn.Module):
    """Adversary `f_b` as `scales` generators: the k-th draws `tiles // 2**k` tiles per side, so
    coarser heads draw larger coherent shapes (an arc across a digit's width, not only within an
    8-px tile). Image i of a batch comes from head i mod `scales`; its noise is the finest head's,
    of which a coarser head reads its first tiles' maps, so one noise tensor serves every head."""

    def __init__(self, noise_dim=1, tiles=2, size=32, out_channels=1, width=16, scales=2):
        super().__init__()
        if tiles % 2 ** (scales - 1):
            raise ValueError(f"tiles {tiles} cannot be halved {scales - 1} times")
        self.heads = nn.ModuleList(BackgroundGenerator(noise_dim, tiles // 2 ** k, size, out_channels, width)
                                   for k in range(scales))
        self.noise_dim, self.tiles, self.out_channels = noise_dim, tiles, out_channels

    def sample_noise(self, n, generator=None, device=None):
        return self.heads[0].sample_noise(n, generator, device)

    def forward(self, z):
        per_image = z.view(-1, self.tiles ** 2, *z.shape[1:])
        H = len(self.heads)
        parts = [head(per_image[k::H, :head.tiles ** 2].flatten(0, 1)) for k, head in enumerate(self.heads)]
        out = parts[0].new_empty(len(per_image), *parts[0].shape[1:])
        for k, part in enumerate(parts):
            out[k::H] = part
        return out

    def generate(self, n, generator=None, device=None):
        return self(self.sample_noise(n, generator, device))


class AGCNN(nn.Module):
    """Attention-guided CNN (Guan et al. 2018), the paper's attention baseline.

    A global classifier G sees the whole image; its last pooling activations, reduced over
    channels by max |·| and min-max normalised, give a heatmap; the bounding box of the largest
    connected component above τ crops the input; a local branch (3×3 stride-2 convs 128, 256,
    512 + global average pooling) reads the crop; the fusion head (dense 2048 → 256 → classes)
    reads the global branch's last pooling map (flattened) and the local branch's pooled
    features. `forward` returns (global logits, fused logits)."""

    def __init__(self, in_channels=1, n_classes=10, widths=(32, 64, 128), dense=128, size=32,
                 tau=0.7, local_widths=(128, 256, 512)):
        super().__init__()
        self.size, self.tau = size, tau
        self.global_branch = Classifier(in_channels, n_classes, widths, dense, size)
        layers, c = [], in_channels
        for w in local_widths:
            layers += [nn.Conv2d(c, w, 3, stride=2, padding=1), nn.ReLU(inplace=True)]
            c = w
        self.local_branch = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        side = size // 2 ** len(widths)
        self.fusion = nn.Sequential(nn.Linear(widths[-1] * side * side + c, 2048), nn.ReLU(inplace=True),
                                    nn.Linear(2048, 256), nn.ReLU(inplace=True),
                                    nn.Linear(256, n_classes))

    @torch.no_grad()
    def crop(self, x, pooled):
        """Crop each image to the box of its heatmap's largest component and resize it back."""
        heat = pooled.abs().amax(1)                                    # N × h × w
        lo, hi = heat.flatten(1).aminmax(dim=1)
        heat = (heat - lo[:, None, None]) / (hi - lo).clamp_min(1e-8)[:, None, None]
        n, h, w = heat.shape
        boxes = torch.tensor([[0, h - 1, 0, w - 1]] * n, dtype=torch.float)   # rows r0..r1, cols c0..c1
        # Components are labelled on the small map: nearest upsampling would not change them.
        for i, hot in enumerate((heat >= self.tau).cpu().numpy()):
            regions = label_regions(hot, connectivity=2)
            if regions.max():
                rows, cols = np.nonzero(regions == np.argmax(np.bincount(regions.ravel())[1:]) + 1)
                boxes[i] = torch.tensor([rows.min(), rows.max(), cols.min(), cols.max()], dtype=torch.float)
        # One batched resampling: map the output grid onto each box (normalised coordinates).
        r0, r1, c0, c1 = boxes.to(x.device).T
        theta = torch.zeros(n, 2, 3, device=x.device)
        theta[:, 0, 0] = (c1 + 1 - c0) / w
        theta[:, 0, 2] = (c0 + c1 + 1) / w - 1
        theta[:, 1, 1] = (r1 + 1 - r0) / h
        theta[:, 1, 2] = (r0 + r1 + 1) / h - 1
        grid = F.affine_grid(theta, x.shape, align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", align_corners=False)

    def forward(self, x):
        g = self.global_branch
        pooled = g.features(x)
        global_logits = g.head(pooled)
        local = self.local_branch(self.crop(x, pooled))
        fused = self.fusion(torch.cat([pooled.flatten(1), local], 1))
        return global_logits, fused

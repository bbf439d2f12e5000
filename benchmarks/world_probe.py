"""Why a studio model falls on a world family: its accuracy on the same test images with only the
surround changed, one factor at a time. The objects and their halo stay exactly as the world suite
keeps them (backgrounds.halo); what fills the rest is, per family, its pattern in its own colours,
a plain wall of its "off" colour, and one of its "on" colour; then the clock pattern in the other
families' colours; then plain walls of a dozen seeded random colours and of studio grey; then
each family's pattern at a fraction of its own contrast (its two colours drawn towards their
midpoint), and in black and white.

    python benchmarks/world_probe.py --model runs:/<run id>/model --tracking-uri sqlite:///studio.db \\
        --studio-dir studio-fashion --images 1000

A family that falls with its pattern but not on its plain colours is read as part of the object;
one that falls on its plain colours too is a palette the model never saw; one that falls at a
quarter of its contrast is read for its shape, not its colours. The predicted-class
counts show where the answers go. This looks at test images: it explains a result, it chooses
nothing (a candidate's rule reads validation only).
"""
import argparse
import platform as _platform_check  # noqa: F401  (run from the repo root: the shim must serve it)

import numpy as np
import torch

from backdrop import tracking
from backdrop.api import load_model
from backdrop.backgrounds import TEST_FAMILIES, family_colours, family_patterns, halo, in_colour
from backdrop.data import make_splits
from backdrop.errors import UserError, one_line_errors
from backdrop.evaluate import predicted_classes
from backdrop.user_data import read_user_source

RANDOM_WALLS, WALL_SEED, STUDIO_GREY = 12, 0, 0.75
CONTRASTS = (0.0, 0.25, 0.5, 0.75, 1.0)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="a model file, or runs:/<id>/model, models:/<name>@<alias>")
    p.add_argument("--tracking-uri", help="the store a runs:/ or models:/ URI lives in")
    p.add_argument("--studio-dir", required=True, help="the studio folder (benchmarks/studio.py builds it)")
    p.add_argument("--images", type=int, default=1000, help="the first N test images")
    a = p.parse_args()
    if a.images < 10:
        raise UserError("--images must be at least 10")
    if a.model.startswith(("runs:/", "models:/")):
        import mlflow
        mlflow.set_tracking_uri(tracking.tracking_uri(a.tracking_uri, create=False))
    model = load_model(a.model)
    if model.shape[0] != 3:
        raise UserError(f"{a.model}: a model of {model.shape[0]} channel(s); the world probe draws colour walls "
                        "and needs an RGB studio model")
    test = make_splits(read_user_source("folder", a.studio_dir, model.shape[-1]), limit=a.images).test
    x, y = test.x, test.y
    keep = halo(x)

    def on(surround):
        """Accuracy (%) and predicted-class counts with the surround replaced (C x S x S or 1 x C x S x S)."""
        pred = predicted_classes(model, torch.where(keep, x, surround.expand_as(x)))
        return 100 * (pred == y).float().mean().item(), np.bincount(pred.numpy(), minlength=len(model.class_names))

    def wall(colour):
        return torch.as_tensor(np.asarray(colour, np.float32))[:, None, None].expand(3, *x.shape[-2:])

    def drawn(pattern, colours_of):
        """The pattern in the two colours of the family `colours_of`, as the world suite draws it."""
        return in_colour(torch.from_numpy(np.array(pattern))[None], colours_of, 3)[0]

    def faded(pattern, name, c):
        """The family as drawn, pulled to a fraction `c` of its contrast around the midpoint of its
        two colours: at 0 a plain wall of the midpoint, at 1 the family as drawn."""
        mid = wall(sum(family_colours(name)) / 2)
        return mid + c * (drawn(pattern, name) - mid)

    size = x.shape[-1]
    clean = 100 * (predicted_classes(model, x) == y).float().mean().item()
    print(f"{a.images} studio test images; clean {clean:.1f} %")
    print("\n| family | own colours | plain 'off' wall | plain 'on' wall | predicted classes (own colours) |")
    print("|---|---|---|---|---|")
    for name in TEST_FAMILIES:
        pattern, colours = family_patterns(name, size)[0], family_colours(name)
        own, counts = on(drawn(pattern, name))
        print(f"| {name} | {own:.1f} | {on(wall(colours[1]))[0]:.1f} | {on(wall(colours[0]))[0]:.1f} | "
              f"{' '.join(map(str, counts))} |")
    clock = family_patterns("clock", size)[0]
    print("\nclock's pattern in other families' colours: "
          + ", ".join(f"{n} {on(drawn(clock, n))[0]:.1f}" for n in TEST_FAMILIES if n != "clock"))
    rng = np.random.RandomState(WALL_SEED)
    walls = [rng.uniform(0, 1, 3) for _ in range(RANDOM_WALLS)]
    print("plain walls of random colours: "
          + ", ".join(f"({' '.join(f'{v:.2f}' for v in c)}) {on(wall(c))[0]:.1f}" for c in walls))
    print(f"plain studio-grey wall ({STUDIO_GREY}): {on(wall([STUDIO_GREY] * 3))[0]:.1f}")
    print(f"\n| family | {' | '.join(f'contrast {c:g}' for c in CONTRASTS)} | black and white |")
    print("|---|" + "---|" * (len(CONTRASTS) + 1))
    for name in TEST_FAMILIES:
        pattern = family_patterns(name, size)[0]
        cells = [on(faded(pattern, name, c))[0] for c in CONTRASTS]
        cells.append(on(torch.from_numpy(np.array(pattern)).expand(3, -1, -1))[0])
        print(f"| {name} | {' | '.join(f'{v:.1f}' for v in cells)} |")


if __name__ == "__main__":
    with one_line_errors("world_probe"):
        main()

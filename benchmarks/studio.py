"""Train in the studio, test in the world: an RGB studio data set built as a real folder of PNG
files, trained on through the folder loader (`--dataset folder:PATH`), by the plain CNN and by the
method, scored on the studio test images (clean) and on the colour world suite (the six families
in colour and held-out photographs).

    python benchmarks/studio.py --data-dir ../shared/data --seeds 0 1 2 --parallel

With --parallel the runs are Ray tasks of one CPU each, as many at a time as Ray has CPUs, and a
finished run of the same config, studio files and commit is reused. The table gives each run's
wall time and its own CPU time: the seconds of all its threads, so with --parallel (one thread a
run) what it costs on one core, however crowded the machine was.

The studio: each Fashion-MNIST object (its intensity is the object's opacity) tinted a random
colour, drawn 40-48 px tall at a random position near the centre of a 64×64 frame, lit by a soft
shading across it, on a plain backdrop of a random light colour with a gentle gradient and sensor
noise (σ 1.5 %), so keying the backdrop is not trivially exact. The images of Fashion-MNIST's
training set give the training and validation folders; those of its test set the test folder.
Built once per (images, seed 0) into --studio-dir; the files are never committed.

Targets (issue 15): the method's mean world accuracy within 3 points of its studio accuracy and no
world family more than 6 points below it; the plain CNN shows the collapse. Model selection: on
validation alone; a candidate config carries its rule, written before its runs, and replaces
configs/studio/adversarial.yaml only if that rule says so.
"""
import argparse
import platform as _platform_check  # noqa: F401  (run from the repo root: the shim must serve it)
import time
from pathlib import Path

import numpy as np
from mlflow import MlflowClient

from backdrop import records, tracking
from backdrop.backgrounds import COLOUR_TEST_FAMILIES
from backdrop.data import read_source
from backdrop.errors import UserError, one_line_errors
from backdrop.hparams import load_config, make_config
from backdrop.job import run_job

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "studio"
EXPERIMENT = "studio"
SIDE = 64
NAMES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot")


def studio_image(obj, rng):
    """One 64×64×3 uint8 studio photograph of `obj` (28×28 uint8, intensity = opacity)."""
    from PIL import Image
    rr, cc = np.mgrid[0:SIDE, 0:SIDE] / SIDE
    backdrop = rng.uniform(0.6, 0.9) + rng.uniform(-0.04, 0.04, 3)                   # a light, slightly tinted colour
    backdrop = backdrop[None, None] + rng.uniform(-0.06, 0.06) * rr[..., None] + rng.uniform(-0.06, 0.06) * cc[..., None]
    tall = int(rng.randint(40, 49))
    alpha = np.asarray(Image.fromarray(obj).resize((tall, tall), Image.BILINEAR), dtype=np.float64) / 255
    top, left = (int(v) for v in rng.randint((SIDE - tall) // 2 - 4, (SIDE - tall) // 2 + 5, 2))
    a = np.zeros((SIDE, SIDE))
    a[top:top + tall, left:left + tall] = alpha
    tint = rng.uniform(0.05, 0.95, 3)
    shading = 0.8 + 0.4 * (1 - rr)[..., None] * rng.uniform(0.5, 1.0)                # light from above
    img = a[..., None] * tint * shading + (1 - a[..., None]) * backdrop
    img += rng.normal(0, 0.015, img.shape)
    return (img.clip(0, 1) * 255).round().astype(np.uint8)


def build_studio(root, data_dir, train_images, test_images):
    """The studio folder: train/<class>/*.png and test/<class>/*.png. Rebuilt only when absent."""
    from PIL import Image
    root = Path(root)
    done = root / ".complete"
    if done.exists() and done.read_text() == f"{train_images} {test_images}":
        return root
    if root.exists():
        import shutil
        shutil.rmtree(root)                     # another size: no file of the old build may stay
    fm = read_source("fashion-mnist", data_dir)
    rng = np.random.RandomState(0)
    for split, x, y, n in (("train", fm.pool_x, fm.pool_y, train_images), ("test", fm.test_x, fm.test_y, test_images)):
        for i in range(min(n, len(x))):
            d = root / split / f"{int(y[i])}-{NAMES[int(y[i])]}"
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(studio_image(x[i], rng)).save(d / f"{i:05d}.png")
    done.write_text(f"{train_images} {test_images}")
    return root


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", help="folder holding fashion-mnist/ (or $BACKDROP_DATA_DIR)")
    p.add_argument("--studio-dir", default="studio-fashion", help="where the studio's PNG folder is built")
    p.add_argument("--train-images", type=int, default=12000, help="studio training (and validation) images")
    p.add_argument("--test-images", type=int, default=2000, help="studio test images")
    p.add_argument("--methods", nargs="+", default=["vanilla", "adversarial"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--limit", type=int, help="keep the first N images of each split (a quick check)")
    p.add_argument("--epochs", type=int, help="every phase's epochs (a quick check, not the benchmark)")
    p.add_argument("--parallel", action="store_true",
                   help="train the runs as Ray tasks of one CPU each, as many at a time as Ray has CPUs; "
                        "finished runs of the same config and commit are reused")
    p.add_argument("--rerun", action="store_true", help="with --parallel: train every run, reusing none")
    p.add_argument("--address", help="with --parallel: a Ray cluster (HOST:PORT or auto); default: $RAY_ADDRESS "
                                         "if set, else a new local instance")
    p.add_argument("--tracking-uri")
    a = p.parse_args()
    if a.train_images < 100 or a.test_images < 20:
        raise UserError("--train-images must be at least 100 and --test-images at least 20")
    if (a.address or a.rerun) and not a.parallel:
        raise UserError("--address and --rerun need --parallel (the sequential runs train in this process)")
    unknown = [m for m in a.methods if not (CONFIGS / f"{m}.yaml").exists()]
    if unknown:
        raise UserError(f"--methods {' '.join(unknown)}: the studio has configs for "
                        + ", ".join(sorted(f.stem for f in CONFIGS.glob("*.yaml"))))
    t0 = time.perf_counter()
    root = build_studio(a.studio_dir, a.data_dir, a.train_images, a.test_images).resolve()
    print(f"studio folder {root}: {a.train_images} training, {a.test_images} test images "
          f"({time.perf_counter() - t0:.0f} s)", flush=True)
    quick = {**({"limit": a.limit} if a.limit else {}),
             **({k: a.epochs for k in ("epochs_f", "epochs_mask", "epochs_adv")} if a.epochs else {})}
    configs = {(method, seed): make_config({**load_config(CONFIGS / f"{method}.yaml"), **quick,
                                            "dataset": f"folder:{root}", "image_size": SIDE, "seed": seed})
               for seed in a.seeds for method in a.methods}
    started = time.perf_counter()
    client = MlflowClient(tracking.tracking_uri(a.tracking_uri))
    say = lambda line: print(line, flush=True)      # noqa: E731
    if a.parallel:
        from backdrop.ablate import run_configs
        run_of = run_configs(configs, experiment=EXPERIMENT, tags={"benchmark": "studio"}, tracking_uri=a.tracking_uri,
                             address=a.address, rerun=a.rerun, with_noise=False, say=say)
        rows = [row(client, key, run_id) for key, run_id in run_of.items()]
    else:
        rows = []
        for (method, seed), cfg in configs.items():
            run_id = run_job(cfg, tracking_uri=a.tracking_uri, experiment=EXPERIMENT, run_name=f"{method} s{seed}",
                             progress=False, tags={"benchmark": "studio"}, with_noise=False)["run_id"]
            rows.append(row(client, (method, seed), run_id))
            say(f"{method} seed {seed}: {rows[-1]['line']}")
    print("\n| method | seed | val clean | val mean | studio (clean) | world mean | world worst | clean − mean | "
          "clean − worst | weakest world family | mask on object | wall | CPU time |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(r["row"])
    print("\nper family (%): " + "; ".join(f"{r['method']} seed {r['seed']}: {r['line']}" for r in rows))
    print(f"wall time, all runs: {(time.perf_counter() - started) / 60:.1f} min; "
          f"tracking: {tracking.tracking_uri(a.tracking_uri)}, experiment {EXPERIMENT}")


def row(client, key, run_id):
    """One run's table row and its per-family line, from what MLflow holds."""
    method, seed = key
    run = client.get_run(run_id)
    test = {k[5:]: 100 * v for k, v in run.data.metrics.items() if k.startswith("test/")}
    # What a choice between studio configs may look at: the last validation (studio images, and
    # the validation background families, which share no drawing with the world suite).
    val = {k: 100 * run.data.metrics[f"val/{k}"] for k in ("clean", "mean")}
    world = {f: test[f] for f in COLOUR_TEST_FAMILIES if f in test}
    weakest = min(world, key=world.get)
    wall = (run.info.end_time - run.info.start_time) / 60000
    cpu = run.data.tags.get(records.CPU_TAG)
    # The label-free mask's share on the keyed object, against the object's share of the frame
    # (below it the mask prefers the backdrop): the last mask epoch's mean over its batches.
    on, share = (run.data.metrics.get(f"mask/{k}") for k in ("mask_on_object", "object_share"))
    mask = f"{100 * on:.0f} % (object {100 * share:.0f} %)" if on is not None else "—"
    return {"method": method, "seed": seed,
            "line": f"studio {test['clean']:.1f}; " + ", ".join(f"{f} {v:.1f}" for f, v in world.items()),
            "row": f"| {method} | {seed} | {val['clean']:.1f} | {val['mean']:.1f} | {test['clean']:.1f} | {test['mean']:.1f} | {test['worst']:.1f} | "
                   f"{test['clean'] - test['mean']:.1f} | {test['clean'] - test['worst']:.1f} | {weakest} | {mask} | "
                   f"{wall:.1f} min | {f'{float(cpu) / 60:.1f} min' if cpu else '—'} |"}


if __name__ == "__main__":
    with one_line_errors("benchmarks/studio.py"):
        main()

"""A user's own images (`folder:PATH`, `npz:PATH`): read, split, trained on, and refused in one
line when bad. Real files written with Pillow and numpy; real training on them."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from backdrop.data import load_dataset, make_splits, read_source
from backdrop.errors import UserError

REPO = Path(__file__).resolve().parents[1]
CLASSES = ("apple", "bottle", "cup")


def studio_images(n_per_class=12, size=(40, 36), rgb=True, seed=0):
    """Small studio photographs: each class a different shape, on a grey backdrop."""
    rng = np.random.RandomState(seed)
    h, w = size[1], size[0]
    rr, cc = np.mgrid[0:h, 0:w]
    out = []
    for label in range(len(CLASSES)):
        for _ in range(n_per_class):
            a = np.full((h, w, 3), 90, np.float64) + rng.normal(0, 4, (h, w, 3))
            cy, cx = h / 2 + rng.uniform(-3, 3), w / 2 + rng.uniform(-3, 3)
            if label == 0:
                obj = (rr - cy) ** 2 + (cc - cx) ** 2 < 10 ** 2
            elif label == 1:
                obj = (abs(rr - cy) < 13) & (abs(cc - cx) < 4)
            else:
                obj = (abs(rr - cy) < 6) & (abs(cc - cx) < 11)
            a[obj] = rng.uniform(120, 255, 3)
            a = a.clip(0, 255).astype(np.uint8)
            out.append((a if rgb else a.mean(2).astype(np.uint8), label))
    return out


def write_folder(root, images, split=None):
    for i, (a, label) in enumerate(images):
        d = Path(root) / (split or "") / CLASSES[label]
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(a).save(d / f"{i:03d}.png")
    return Path(root)


def test_a_folder_of_class_folders_is_a_data_set_of_its_classes_channels_and_size(tmp_path):
    root = write_folder(tmp_path / "photos", studio_images())
    splits = load_dataset(f"folder:{root}", seed=3)
    assert splits.n_classes == 3 and splits.class_names == CLASSES
    assert splits.train.x.shape[1:] == (3, 32, 32)         # largest supported side no image is below
    n = len(splits.train.y) + len(splits.val.y) + len(splits.test.y)
    assert n == 36 and len(splits.test.y) == round(36 * 0.2)
    assert 0 <= float(splits.train.x.min()) and float(splits.train.x.max()) <= 1
    # The test set is fixed whatever the seed; val moves with it.
    other = load_dataset(f"folder:{root}", seed=4)
    assert torch.equal(other.test.x, splits.test.x) and not torch.equal(other.val.x, splits.val.x)



def test_a_non_square_image_is_padded_with_its_edges_not_stretched(tmp_path):
    """A 20×20 square on a 64-wide, 40-tall backdrop stays square (padded top and bottom with the
    edge rows, then resized to 32): stretched, it would come out 10 px wide and 16 tall."""
    a = np.full((40, 64, 3), 90, np.uint8)
    a[10:30, 22:42] = 230
    for label in range(2):
        d = tmp_path / "p" / CLASSES[label]
        d.mkdir(parents=True)
        for i in range(3):
            Image.fromarray(a).save(d / f"{i}.png")
    x = load_dataset(f"folder:{tmp_path / 'p'}", image_size=32).train.x[0, 0]
    rows, cols = (x > 200 / 255).nonzero(as_tuple=True)
    assert rows.max() - rows.min() == cols.max() - cols.min() == 9           # 20 px of 64, at 32: 10
    assert abs(float(x[0].mean()) - 90 / 255) < 0.01                          # the top edge continued


def test_train_val_test_folders_are_the_splits_and_a_larger_size_can_be_asked(tmp_path):
    images = studio_images(n_per_class=6, size=(70, 70))
    root = tmp_path / "studio"
    write_folder(root, images[0::3] + images[1::3], "train")
    write_folder(root, images[2::3], "test")
    source = read_source(f"folder:{root}", image_size=64)
    splits = make_splits(source, seed=0)
    assert splits.train.x.shape[1:] == (3, 64, 64) and len(splits.test.y) == 6
    assert len(splits.train.y) + len(splits.val.y) == 12
    with pytest.raises(UserError, match="smaller than image_size 128"):
        read_source(f"folder:{root}", image_size=128)


def test_an_npz_of_grayscale_arrays_with_class_names_and_its_own_test_split(tmp_path):
    images = studio_images(n_per_class=8, rgb=False, size=(32, 32))
    x = np.stack([a for a, _ in images])
    y = np.array([label for _, label in images])
    path = tmp_path / "d.npz"
    np.savez(path, x=x[::2], y=y[::2], x_test=x[1::2], y_test=y[1::2], class_names=np.array(CLASSES))
    splits = load_dataset(f"npz:{path}", seed=0)
    assert splits.train.x.shape[1:] == (1, 32, 32) and splits.class_names == CLASSES
    # 32 px: not resampled; the same images with their labels, in a fixed order that mixes the classes
    expected = torch.from_numpy(x[1::2]).float() / 255
    order = [next(i for i in range(len(expected)) if torch.equal(got, expected[i])) for got in splits.test.x[:, 0]]
    assert sorted(order) == list(range(len(expected)))
    assert torch.equal(splits.test.y, torch.from_numpy(y[1::2])[order])
    # The files come class by class; the first few images of a split (`limit`) still hold most classes.
    few = load_dataset(f"npz:{path}", seed=0, limit=8)
    assert set(few.test.y.tolist()) == set(few.train.y.tolist()) == set(range(len(CLASSES)))


def bad_cases(tmp_path):
    good = studio_images(n_per_class=3)
    cases = {}
    (tmp_path / "empty").mkdir()
    cases["empty"] = (f"folder:{tmp_path / 'empty'}", "no class sub-folders")
    write_folder(tmp_path / "one", good[:3])
    cases["one"] = (f"folder:{tmp_path / 'one'}", "only the class 'apple'")
    write_folder(tmp_path / "junk", good)
    (tmp_path / "junk" / "cup" / "notes.png").write_text("not an image")
    cases["junk"] = (f"folder:{tmp_path / 'junk'}", "notes.png is not an image")
    write_folder(tmp_path / "mixed", good)
    Image.fromarray(good[0][0].mean(2).astype(np.uint8)).save(tmp_path / "mixed" / "cup" / "gray.png")
    cases["mixed"] = (f"folder:{tmp_path / 'mixed'}", "mixes grayscale")
    write_folder(tmp_path / "tiny", studio_images(n_per_class=2, size=(20, 20)))
    cases["tiny"] = (f"folder:{tmp_path / 'tiny'}", "need at least 32")
    np.savez(tmp_path / "labels.npz", x=np.zeros((4, 32, 32), np.uint8), y=np.array([0, 1, 2, 5]),
             class_names=np.array(["a", "b", "c"]))
    cases["labels"] = (f"npz:{tmp_path / 'labels.npz'}", "a label is 5")
    np.save(tmp_path / "one.npy", np.zeros((4, 32, 32), np.uint8))
    cases["npy"] = (f"npz:{tmp_path / 'one.npy'}", "not an .npz")
    write_folder(tmp_path / "split", good, "train")
    write_folder(tmp_path / "split", good, "test")
    (tmp_path / "split" / "val" / "cup").mkdir(parents=True)
    cases["emptyval"] = (f"folder:{tmp_path / 'split'}", "val holds no images")
    write_folder(tmp_path / "deep", good)
    Image.fromarray(np.full((36, 36), 1000, np.int32)).save(tmp_path / "deep" / "cup" / "i32.tif")
    cases["deep"] = (f"folder:{tmp_path / 'deep'}", "32-bit integer pixels")
    cases["nowhere"] = (f"folder:{tmp_path / 'nowhere'}", "does not exist")
    return cases


def test_bad_data_sets_are_one_line_errors_naming_the_file_or_class(tmp_path):
    for name, (dataset, message) in bad_cases(tmp_path).items():
        with pytest.raises(UserError, match=message) as e:
            load_dataset(dataset)
        assert "\n" not in str(e.value), name


def test_the_train_command_refuses_a_bad_folder_in_one_line_with_status_2(tmp_path):
    dataset, message = bad_cases(tmp_path)["mixed"]
    r = subprocess.run([sys.executable, "-m", "platform.train", "--dataset", dataset, "--tracking-uri",
                        f"sqlite:///{tmp_path / 'm.db'}"], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and message in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_the_train_command_trains_on_a_folder_and_records_its_classes(tmp_path):
    """`backdrop train --dataset folder:my_photos` as the README shows it (a relative path):
    the adversarial method trains one tiny epoch per phase on colour images, is saved, and
    reloads with the data set's channels, size and classes."""
    from mlflow import MlflowClient

    from backdrop.api import load_model
    write_folder(tmp_path / "my_photos", studio_images(n_per_class=10))
    # From the photos' parent folder, so `backdrop train` (the installed command; `python -m
    # platform.train` runs from the repo root) and a relative path, as a user types them.
    r = subprocess.run([str(Path(sys.executable).parent / "backdrop"), "train", "--dataset", "folder:my_photos",
                        "--epochs-f", "1", "--epochs-mask", "1", "--epochs-adv", "1", "--widths", "8,16,32",
                        "--dense", "16", "--batch-size", "8", "--save", "m.pt", "--quiet",
                        "--tracking-uri", "sqlite:///m.db"], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    model = load_model(tmp_path / "m.pt")
    assert model.shape == (3, 32, 32) and model.class_names == CLASSES
    assert model.predict(torch.rand(2, 3, 32, 32)).shape == (2, 3)
    client = MlflowClient(f"sqlite:///{tmp_path / 'm.db'}")
    run = client.search_runs([e.experiment_id for e in client.search_experiments()])[0]
    assert run.info.status == "FINISHED" and "test/worst" in run.data.metrics and "test/photos" in run.data.metrics
    assert "test_per_class.png" in {a.path for a in client.list_artifacts(run.info.run_id)}
    # the MLflow Model names its classes too (a pyfunc user's logit k is class_names[k])
    import mlflow
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'm.db'}")
    pyfunc = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    assert pyfunc.metadata.metadata["class_names"] == list(CLASSES)


def test_a_sweep_trains_on_own_images_after_the_folder_is_gone(tmp_path):
    """The sweep's driver reads the folder once; its trials carve their splits from that copy in
    Ray's object store, so the folder can go after the read and the 2-trial sweep still finishes."""
    import shutil

    from backdrop.data import source_of
    from backdrop.search_space import load_space
    from conftest import two_trial_sweep
    folder = write_folder(tmp_path / "photos", studio_images(n_per_class=12))
    space = tmp_path / "own.yaml"
    space.write_text("sweep: {trials: 2, workers: 1}\n"
                     f"fixed: {{dataset: 'folder:{folder}', method: vanilla, widths: [8, 16, 32], dense: 32,\n"
                     "        batch_size: 8, augment: false, epochs_f: 1}\n"
                     "lr_f: {loguniform: [1.0e-3, 2.0e-3]}\n")
    space = load_space(space)
    source_of(space.base_config())
    shutil.rmtree(folder)
    two_trial_sweep(space, tmp_path)


def test_an_ablation_on_a_folder_trains_both_sides_and_reuses_them_while_the_files_are_the_same(tmp_path):
    """`backdrop ablate mask_off --dataset folder:my_photos`, typed as the README shows it (a
    relative path), from the photos' parent folder: both sides train as Ray tasks on the folder,
    every record names the folder by its absolute path, and a rerun reuses the four runs."""
    from mlflow import MlflowClient
    write_folder(tmp_path / "my_photos", studio_images(n_per_class=10))
    args = [str(Path(sys.executable).parent / "backdrop"), "ablate", "mask_off", "--dataset", "folder:my_photos",
            "--seeds", "2", "--epochs-f", "1", "--epochs-mask", "1", "--epochs-adv", "1", "--widths", "8,16,32",
            "--batch-size", "8", "--tracking-uri", "sqlite:///a.db"]
    r = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "0 finished run(s) reused, 4 to train" in r.stdout
    client = MlflowClient(f"sqlite:///{tmp_path / 'a.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    children = [x for x in runs if "mlflow.parentRunId" in x.data.tags]
    assert {(c.data.tags["spec"], c.data.params["seed"], c.data.params["mask"], c.info.status) for c in children} == {
        (spec, seed, mask, "FINISHED") for spec, mask in (("adversarial", "unet"), ("mask_off", "none"))
        for seed in ("0", "1")}
    assert {x.data.params["dataset"] for x in runs} == {f"folder:{(tmp_path / 'my_photos').resolve()}"}
    assert all({"test/clean", "test/photos", "test/worst"} <= set(c.data.metrics) for c in children)
    again = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True)
    assert again.returncode == 0 and "4 finished run(s) reused, 0 to train" in again.stdout, again.stderr[-2000:]


def test_the_object_is_keyed_against_any_backdrop_and_black_backdrops_are_unchanged():
    """keying.object_support: on MNIST-style black backdrops exactly x > 0 (what the test suite
    and the heuristic mask always used); on a grey studio backdrop with a gradient and sensor
    noise, the object's own pixels, which x > 0 cannot find (every pixel is above 0)."""
    from backdrop.keying import object_support
    from backdrop.masks import heuristic_mask
    digits = load_dataset("digits").test.x
    assert torch.equal(object_support(digits), (digits > 0).any(1, keepdim=True))
    rng = np.random.RandomState(0)
    rr, cc = np.mgrid[0:32, 0:32]
    x, truth = [], []
    for i in range(20):
        backdrop = 0.35 + 0.2 * rr / 32 + 0.1 * cc / 32 + rng.normal(0, 0.01, (3, 32, 32))
        obj = (rr - 16 - rng.randint(-4, 5)) ** 2 + (cc - 16 - rng.randint(-4, 5)) ** 2 < rng.randint(5, 9) ** 2
        x.append(np.where(obj, rng.uniform(0.0, 1.0, (3, 1, 1)), backdrop).clip(0, 1))
        truth.append(obj)
    x, truth = torch.tensor(np.stack(x), dtype=torch.float32), torch.tensor(np.stack(truth))[:, None]
    support = object_support(x)
    iou = (support & truth).sum() / (support | truth).sum()
    assert iou > 0.95, float(iou)
    assert bool((x > 0).all())                            # the old rule would call all of it the object
    assert torch.equal(heuristic_mask(x), support.float())
    # A flat, noise-free backdrop (a render, a plain PNG): the object alone, not the whole frame.
    for grey in (200 / 255, 0.7, 1.0):
        flat = torch.full((2, 3, 64, 64), grey)
        flat[:, :, 20:40, 20:40] = 0.2
        assert int(object_support(flat).sum()) == 2 * 400, grey
    # Augmented batches (shifted, rotated, brightened) of a black backdrop: still exactly x > 0.
    from backdrop.augment import Augment
    moved, = Augment()(digits, generator=torch.Generator().manual_seed(0))
    assert torch.equal(object_support(moved), (moved > 0).any(1, keepdim=True))


def test_colour_images_meet_the_families_in_colour_and_grayscale_suites_are_unchanged():
    from backdrop.backgrounds import TEST_FAMILIES, build_suite, family_colours, family_patterns, halo
    gray = load_dataset("digits").test.x[:50]
    suite = build_suite(gray)
    keep = halo(gray)
    for name in TEST_FAMILIES:        # the grayscale rule: the pattern itself where the object is not
        bank = torch.tensor(family_patterns(name, 32))
        p = bank[torch.arange(50) % len(bank)][:, None]
        assert torch.equal(suite[name], torch.where(keep, gray, p))
    colour = gray.expand(-1, 3, -1, -1) * torch.tensor([1.0, 0.5, 0.2])[None, :, None, None]
    suite = build_suite(colour)
    seen = set()
    for name in TEST_FAMILIES:
        on, off = (torch.tensor(c) for c in family_colours(name))
        outside = suite[name].permute(0, 2, 3, 1)[~keep[:, 0]]            # pixels × 3
        is_on, is_off = (outside - on).abs().max(1).values < 1e-6, (outside - off).abs().max(1).values < 1e-6
        assert bool((is_on | is_off).all()) and bool(is_off.any()), name
        seen.add(tuple(off.tolist()))
    assert len(seen) == len(TEST_FAMILIES)                               # each family its own colours


def test_a_colour_test_suite_adds_photographs_that_training_never_crops():
    from backdrop.backgrounds import TRAIN_PHOTOS, WORLD_PHOTOS, TextureBank
    from backdrop.evaluate import test_scorer
    assert not set(TRAIN_PHOTOS) & set(WORLD_PHOTOS)
    assert set(TextureBank(32, 3).names) <= set(TRAIN_PHOTOS)            # the `real` mode's crops
    splits = load_dataset("digits")
    gray = test_scorer(splits)(lambda x: torch.zeros(len(x), 10))
    assert "test/photos" not in {f"test/{k}" for k in gray}          # grayscale: Table 1's columns only
    splits.test.x = splits.test.x.expand(-1, 3, -1, -1).contiguous()
    colour = test_scorer(splits)(lambda x: torch.zeros(len(x), 10))
    assert set(colour) == set(gray) | {"photos"}


def test_the_sweep_takes_the_data_set_from_the_command_line_with_its_path_made_absolute(tmp_path, monkeypatch):
    from backdrop.commands.sweep import DEFAULT_SPACE
    from backdrop.dataset_names import absolute_dataset
    from backdrop.search_space import load_space
    monkeypatch.chdir(tmp_path)
    assert absolute_dataset("folder:my_photos") == f"folder:{tmp_path / 'my_photos'}"
    assert absolute_dataset("mnist") == "mnist"
    space = load_space(DEFAULT_SPACE).with_fixed({"dataset": absolute_dataset("npz:d.npz"), "image_size": 64})
    assert space.base_config()["dataset"] == f"npz:{tmp_path / 'd.npz'}" and space.base_config()["image_size"] == 64
    with pytest.raises(UserError, match="image_size 48"):
        load_space(DEFAULT_SPACE).with_fixed({"image_size": 48})
    r = subprocess.run([sys.executable, "-m", "platform.sweep", "--resume", "--dataset", "mnist"], cwd=REPO,
                       capture_output=True, text=True)
    assert r.returncode == 2 and "drop --dataset" in r.stderr and "Traceback" not in r.stderr


def test_a_bad_dataset_or_image_size_in_a_config_is_refused_before_torch_loads():
    """The dataset and image_size rules live in a module without torch: a config's, a flag's or
    a space file's bad value is one line at once, not after torch's import (seconds)."""
    code = ("import sys\nfrom backdrop.hparams import make_config\nfrom backdrop.errors import UserError\n"
            "for bad in ({'dataset': 'folder:'}, {'image_size': 48}):\n"
            "    try:\n        make_config(bad)\n    except UserError as e:\n        print(e)\n"
            "print('torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert "'dataset' must be one of" in out[0] and "image_size 48 is not supported" in out[1]
    assert out[2] == "False"

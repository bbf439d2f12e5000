"""Tests of backdrop.data: the real MNIST files in shared/data, the offline digits, and every
one-line UserError (bad names, directories, checksums, gzip, IDX headers, downloads).

No test reaches the internet: downloads go to a dead local port or a local HTTP server.
"""
import functools
import gzip
import hashlib
import http.server
import os
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from backdrop import data
from backdrop.errors import UserError

# Absolute, because dataset_copy symlinks to it and a relative target would resolve from tmp_path.
SHARED_DATA = Path(os.environ.get("BACKDROP_DATA_DIR")
                   or Path(__file__).resolve().parents[2] / "shared" / "data").resolve()
MNIST_DIR = SHARED_DATA / "mnist"
needs_mnist = pytest.mark.skipif(
    not all((MNIST_DIR / f).is_file() for f in data.FILES.values()),
    reason=f"MNIST .gz files not found in {MNIST_DIR} (set BACKDROP_DATA_DIR to a folder with mnist/)")


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch, tmp_path):
    """No test sees the caller's data dir or writes the real download cache."""
    monkeypatch.delenv("BACKDROP_DATA_DIR", raising=False)
    monkeypatch.setenv("BACKDROP_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def mnist():
    return data.load_dataset("mnist", str(SHARED_DATA))


@pytest.fixture(scope="module")
def digits():
    return data.load_dataset("digits")


def raises_one_line(fn, *names):
    """Call fn, expect a UserError whose message is one line and names every item in names."""
    with pytest.raises(UserError) as info:
        fn()
    msg = str(info.value)
    assert "\n" not in msg and msg.strip() == msg, msg
    for name in names:
        assert str(name) in msg, (name, msg)
    return msg


def dataset_copy(tmp_path, alter=None):
    """tmp_path/mnist with the four files symlinked, except `alter`: {file name: new bytes}."""
    folder = tmp_path / "mnist"
    folder.mkdir()
    for fname in data.FILES.values():
        if alter and fname in alter:
            (folder / fname).write_bytes(alter[fname])
        else:
            (folder / fname).symlink_to(MNIST_DIR / fname)
    return folder


def check_split(split, n=None):
    assert split.x.dtype == torch.float32 and split.y.dtype == torch.int64
    assert split.x.shape[1:] == (1, data.IMAGE_SIZE, data.IMAGE_SIZE)
    assert len(split.x) == len(split.y) and (n is None or len(split.y) == n)
    assert 0 <= split.x.min() and split.x.max() <= 1
    border = torch.ones(32, 32, dtype=torch.bool)
    border[2:30, 2:30] = False
    assert (split.x[:, :, border] == 0).all(), "the 2 px padding must be exactly 0"
    assert 0 <= split.y.min() and split.y.max() <= 9


# ---------------------------------------------------------------- real data

@needs_mnist
def test_mnist_shapes_ranges_padding(mnist):
    check_split(mnist.train, 55000)
    check_split(mnist.val, 5000)
    check_split(mnist.test, 10000)
    assert mnist.name == "mnist" and mnist.n_classes == 10
    assert mnist.train.x.max() == 1 and mnist.test.y[:3].tolist() == [7, 2, 1]


@needs_mnist
def test_mnist_original_order():
    labels = data.read_idx_gz(MNIST_DIR / "train-labels-idx1-ubyte.gz")
    assert labels.shape == (60000,) and labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    images = data.read_idx_gz(MNIST_DIR / "t10k-images-idx3-ubyte.gz")
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8


@needs_mnist
def test_val_split_deterministic_and_disjoint(mnist):
    again = data.load_dataset("mnist", str(SHARED_DATA), limit=100)
    assert torch.equal(again.val.x, mnist.val.x[:100]) and torch.equal(again.val.y, mnist.val.y[:100])
    other = data.load_dataset("mnist", str(SHARED_DATA), seed=1, limit=100)
    assert not torch.equal(other.val.y, again.val.y)
    # MNIST's 60000 training images are all distinct, so disjointness can be checked on content.
    rows = lambda x: {hashlib.md5(r.numpy().tobytes()).digest() for r in x}  # noqa: E731
    train, val = rows(mnist.train.x), rows(mnist.val.x)
    assert len(train) == 55000 and len(val) == 5000 and not train & val


@needs_mnist
def test_dataset_folder_itself_and_env_var(monkeypatch):
    direct = data.load_dataset("mnist", str(MNIST_DIR), limit=5)
    monkeypatch.setenv("BACKDROP_DATA_DIR", str(SHARED_DATA))
    via_env = data.load_dataset("mnist", limit=5)
    assert torch.equal(direct.test.x, via_env.test.x) and len(direct.train.y) == 5


def test_digits_offline(digits):
    check_split(digits.train, 1168)
    check_split(digits.val, 270)
    check_split(digits.test, 359)
    x = digits.train.x
    assert (x == 0).float().mean() > 0.4, "background must be exactly 0"
    assert ((x > 0) & (x < 0.05)).sum() == 0, "values under the threshold must be 0"
    assert x.max() == 1


def test_digits_test_fixed_val_seeded(digits):
    other = data.load_dataset("digits", seed=1, limit=50)
    assert torch.equal(other.test.x, digits.test.x[:50])
    assert not torch.equal(other.val.y, digits.val.y[:50])
    assert torch.equal(data.load_dataset("digits", limit=50).val.x, digits.val.x[:50])


def test_resolve_data_dir_and_cache_dir(monkeypatch, tmp_path):
    assert data.resolve_data_dir(None) is None
    monkeypatch.setenv("BACKDROP_DATA_DIR", "/some/where")
    assert data.resolve_data_dir(None) == Path("/some/where")
    assert data.resolve_data_dir("/x") == Path("/x")
    assert data.cache_dir() == tmp_path / "cache"
    monkeypatch.delenv("BACKDROP_CACHE_DIR")
    assert data.cache_dir() == Path.home() / ".cache" / "backdrop"


# ---------------------------------------------------------------- errors

def test_unknown_dataset():
    raises_one_line(lambda: data.load_dataset("foo"), "'foo'", "digits, mnist, fashion-mnist")


def test_bad_arguments():
    raises_one_line(lambda: data.load_dataset("digits", val_fraction=1.5), "val_fraction")
    raises_one_line(lambda: data.load_dataset("digits", limit=0), "limit")


def test_missing_data_dir(tmp_path):
    missing = tmp_path / "nope"
    msg = raises_one_line(lambda: data.load_dataset("mnist", str(missing)), missing)
    assert "does not exist" in msg
    raises_one_line(lambda: data.load_dataset("mnist", str(tmp_path)), tmp_path, "mnist")


@needs_mnist
def test_checksum_mismatch(tmp_path):
    fname = "train-labels-idx1-ubyte.gz"
    raw = bytearray((MNIST_DIR / fname).read_bytes())
    raw[100] ^= 0xFF
    folder = dataset_copy(tmp_path, {fname: bytes(raw)})
    msg = raises_one_line(lambda: data.load_dataset("mnist", str(tmp_path)), folder / fname,
                          data.SHA256["mnist"]["train-labels"])
    assert "delete" in msg


@needs_mnist
def test_truncated_file_caught_by_checksum(tmp_path):
    fname = "t10k-labels-idx1-ubyte.gz"
    raw = (MNIST_DIR / fname).read_bytes()
    folder = dataset_copy(tmp_path, {fname: raw[: len(raw) // 2]})
    raises_one_line(lambda: data.fetch_idx_files("mnist", str(folder)), folder / fname, "checksum")


@needs_mnist
def test_missing_file_in_data_dir(tmp_path):
    folder = dataset_copy(tmp_path)
    (folder / "t10k-images-idx3-ubyte.gz").unlink()
    raises_one_line(lambda: data.fetch_idx_files("mnist", str(tmp_path)),
                    folder / "t10k-images-idx3-ubyte.gz")


def idx_bytes(magic, dims, payload):
    head = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims)
    return head + payload


def test_read_idx_gz_parses_and_rejects(tmp_path):
    good = tmp_path / "good.gz"
    good.write_bytes(gzip.compress(idx_bytes(0x0803, (2, 3, 4), bytes(range(24)))))
    assert data.read_idx_gz(good).tolist() == np.arange(24).reshape(2, 3, 4).tolist()

    full = gzip.compress(idx_bytes(0x0801, (1000,), bytes(1000)))
    cases = {
        "truncated.gz": full[: len(full) // 2],
        "notgzip.gz": b"this is not gzip at all",
        "badmagic.gz": gzip.compress(idx_bytes(0x0805, (4,), bytes(4))),
        "short.gz": gzip.compress(idx_bytes(0x0801, (10,), bytes(5))),
    }
    for fname, raw in cases.items():
        (tmp_path / fname).write_bytes(raw)
        raises_one_line(lambda: data.read_idx_gz(tmp_path / fname), tmp_path / fname)
    assert "magic 0x00000805" in raises_one_line(lambda: data.read_idx_gz(tmp_path / "badmagic.gz"))
    raises_one_line(lambda: data.read_idx_gz(tmp_path / "absent.gz"), tmp_path / "absent.gz")


def test_no_download_and_nothing_cached(tmp_path):
    msg = raises_one_line(lambda: data.load_dataset("mnist", download=False),
                          tmp_path / "cache" / "mnist" / "train-images-idx3-ubyte.gz")
    assert "BACKDROP_DATA_DIR" in msg


def test_failed_download_leaves_no_partial_file(monkeypatch, tmp_path):
    monkeypatch.setitem(data.MIRRORS, "mnist", ["http://127.0.0.1:9/"])
    msg = raises_one_line(lambda: data.load_dataset("mnist"), "train-images-idx3-ubyte.gz",
                          "127.0.0.1:9", "--data-dir", "BACKDROP_DATA_DIR")
    assert "unreachable" in msg
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]


# ---------------------------------------------------------------- downloads from a local server

@pytest.fixture
def serve(tmp_path):
    """serve(folder) -> base URL of a local HTTP server for that folder (stopped after the test)."""
    servers = []

    def start(folder):
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
        handler.log_message = lambda *a: None
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}/"

    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


@needs_mnist
def test_download_falls_back_to_next_mirror_and_caches(monkeypatch, tmp_path, serve):
    monkeypatch.setitem(data.MIRRORS, "mnist", ["http://127.0.0.1:9/", serve(MNIST_DIR)])
    paths = data.fetch_idx_files("mnist")
    cached = tmp_path / "cache" / "mnist"
    assert set(paths) == set(data.FILES) and all(p.parent == cached for p in paths.values())
    assert sorted(p.name for p in cached.iterdir()) == sorted(data.FILES.values())
    # Now cached: works with downloading off and the mirrors dead.
    monkeypatch.setitem(data.MIRRORS, "mnist", ["http://127.0.0.1:9/"])
    assert data.load_dataset("mnist", download=False, limit=3).train.y.tolist() == [5, 0, 4]


def test_download_with_wrong_checksum_is_discarded(monkeypatch, tmp_path, serve):
    junk = tmp_path / "junk"
    junk.mkdir()
    for fname in data.FILES.values():
        (junk / fname).write_bytes(b"not the real file")
    monkeypatch.setitem(data.MIRRORS, "fashion-mnist", [serve(junk)])
    msg = raises_one_line(lambda: data.fetch_idx_files("fashion-mnist"), "sha256")
    assert "train-images-idx3-ubyte.gz" in msg
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]

"""Write docs/contact_sheet.png: one real test digit on clean + every test and val background.

    python benchmarks/contact_sheet.py [--data-dir DIR] [--dataset mnist] [--index 0] [--out PATH]

The digit comes from `backdrop.data.load_dataset` (data dir from --data-dir or
BACKDROP_DATA_DIR; no download). If that fails, the MNIST test images are read directly from
DIR/mnist/t10k-images-idx3-ubyte.gz (or DIR itself), and as a last resort scikit-learn's digits.
"""
from __future__ import annotations

import argparse
import gzip
import os
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backdrop.backgrounds import contact_sheet  # noqa: E402
from backdrop.errors import UserError, one_line_errors  # noqa: E402

DEFAULT_DATA_DIR = "/work/shared/data"


def _read_idx_images(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        raw = f.read()
    magic, n, h, w = (int.from_bytes(raw[i:i + 4], "big") for i in range(0, 16, 4))
    if magic != 0x0803:
        raise ValueError(f"{path} is not an IDX image file")
    return np.frombuffer(raw, np.uint8, count=n * h * w, offset=16).reshape(n, h, w)


def load_digit(dataset: str, data_dir: str | None, index: int) -> tuple[torch.Tensor, str]:
    """1×1×32×32 float32 in [0, 1] with an exactly-zero background, and where it came from."""
    try:
        from backdrop.data import load_dataset
        splits = load_dataset(dataset, data_dir, limit=index + 1, download=False)
        return splits.test.x[index:index + 1], f"{dataset} test #{index} (backdrop.data)"
    except Exception as e:  # noqa: BLE001 - fall back to a direct read
        print(f"load_dataset failed ({str(e).splitlines()[0] if str(e) else type(e).__name__}); "
              "reading the IDX file directly", file=sys.stderr)
    name = "t10k-images-idx3-ubyte.gz"
    for p in (Path(data_dir) / dataset / name, Path(data_dir) / name):
        if p.is_file():
            imgs = _read_idx_images(p)
            x = np.zeros((1, 1, 32, 32), np.float32)
            x[0, 0, 2:30, 2:30] = imgs[index] / 255.0
            return torch.from_numpy(x), f"{dataset} test #{index} ({p})"
    print("no IDX file found; using scikit-learn's digits", file=sys.stderr)
    from sklearn.datasets import load_digits
    d = torch.from_numpy(load_digits().images[index]).float().div(16)[None, None]
    d = torch.nn.functional.interpolate(d, size=(28, 28), mode="bilinear", align_corners=False)
    d = torch.where(d < 0.05, torch.zeros(()), d).clamp(0, 1)
    return torch.nn.functional.pad(d, (2, 2, 2, 2)), f"sklearn digits #{index}"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=os.environ.get("BACKDROP_DATA_DIR") or DEFAULT_DATA_DIR)
    ap.add_argument("--dataset", default="mnist", choices=("mnist", "fashion-mnist", "digits"))
    ap.add_argument("--index", type=int, default=0, help="which test image (default 0)")
    ap.add_argument("--out", default=str(ROOT / "docs" / "contact_sheet.png"))
    args = ap.parse_args(argv)
    if args.index < 0:
        raise UserError(f"--index must be >= 0, got {args.index}")
    x, source = load_digit(args.dataset, args.data_dir, args.index)
    contact_sheet(x, args.out)
    print(f"wrote {args.out} from {source}")


if __name__ == "__main__":
    with one_line_errors("contact_sheet"):
        main()

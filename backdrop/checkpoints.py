"""Ray checkpoints of a training job: what one holds (the training state and the metrics of every
epoch so far), where they live (`storage_uri`) and how to read one back. The same layout serves a
Ray Train run and a one-worker Tune trial, so a driver reads either the same way."""
import json
from pathlib import Path

import torch

STATE_FILE = "state.pt"          # inside each checkpoint directory: the training state
HISTORY_FILE = "history.json"    # ... and every epoch's metrics so far (for records that missed one)
DEFAULT_STORAGE = "ray_results"  # Ray Train / Tune storage, relative to the working directory


def storage_uri(path=None):
    """Where Ray keeps checkpoints: an s3://, gs:// or NFS path on a cluster; ./ray_results here."""
    path = path or DEFAULT_STORAGE
    return path if "://" in path else str(Path(path).expanduser().resolve())


def save_checkpoint(directory, state, history):
    torch.save(state, Path(directory) / STATE_FILE)
    (Path(directory) / HISTORY_FILE).write_text(json.dumps(history))


def load_state(checkpoint):
    """The training state inside a ray.train.Checkpoint (local or remote storage), or None."""
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as d:
        return torch.load(Path(d) / STATE_FILE, map_location="cpu", weights_only=True)   # no code runs


def load_history(checkpoint):
    """[{"step": s, metric: value, ...}] of every epoch up to this checkpoint (empty if None)."""
    if checkpoint is None:
        return []
    with checkpoint.as_directory() as d:
        path = Path(d) / HISTORY_FILE
        return json.loads(path.read_text()) if path.is_file() else []


def checkpoint_at(path, storage_path=None):
    """The Checkpoint at a path as Ray reports it (`checkpoint_path` in Tune results, or a Tune
    result's checkpoint): a path within the storage's filesystem, without its s3:// scheme."""
    import pyarrow.fs
    from ray.train import Checkpoint
    return Checkpoint(path, filesystem=pyarrow.fs.FileSystem.from_uri(storage_uri(storage_path))[0])

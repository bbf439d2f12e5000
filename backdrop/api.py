"""Save a trained model and load it back to classify images of your own.

    from backdrop.api import load_model
    model = load_model("model.pt")          # a file saved by `python -m platform.train`
    model = load_model("models:/backdrop-quick@champion")   # or runs:/<run id>/model
    logits = model(x)                       # x: N×C×S×S float tensor in [0, 1] → N×classes
    model.class_names[logits.argmax(1)[0]]  # the data set's class names (folder names for folder:)
    model.score(x, y)                       # accuracy on your own backgrounds
"""
import pickle
import tempfile
from pathlib import Path

import numpy as np
import torch

from .algorithms import get_algorithm, place
from .errors import UserError
from .hparams import make_config


# State a predictor never reads (the game's replay buffer: megabytes), left out of model files;
# checkpoints keep it, since a resumed run needs it.
TRAINING_ONLY = ("replay",)


def save_model(algorithm, path):
    """Everything needed to rebuild the predictor: the config, the shapes and all weights."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v for k, v in algorithm.state_dict().items() if not k.startswith(TRAINING_ONLY)}
    torch.save({"config": algorithm.cfg, "in_channels": algorithm.in_channels, "n_classes": algorithm.n_classes,
                "class_names": list(algorithm.class_names), "size": algorithm.size, "state": state}, path)
    return path


class Model:
    """A loaded predictor: call it on N×C×S×S floats in [0, 1] to get logits."""

    def __init__(self, algorithm):
        self.algorithm = algorithm.eval()
        self.config = algorithm.cfg
        self.shape = (algorithm.in_channels, algorithm.size, algorithm.size)
        self.class_names = algorithm.class_names      # logit k is class_names[k]

    def check(self, x):
        if not isinstance(x, torch.Tensor):
            x = torch.tensor(np.asarray(x, dtype=np.float32))   # a copy: arrays from Ray or MLflow are read-only
        x = x.float()
        if x.dim() != 4 or tuple(x.shape[1:]) != self.shape:
            raise UserError(f"expected a batch of shape N×{'×'.join(map(str, self.shape))}, got {tuple(x.shape)}")
        if x.numel() and (x.min() < 0 or x.max() > 1):
            raise UserError("pixel values must lie in [0, 1]; scale uint8 images by 1/255")
        return x

    @torch.no_grad()
    def __call__(self, x):
        return self.algorithm.predict(self.check(x))

    predict = __call__

    def score(self, x, y):
        return (self(x).argmax(1) == torch.as_tensor(y)).float().mean().item()


def load_model(path) -> Model:
    """A model file, or an MLflow model URI (`runs:/<run id>/model`, `models:/<name>@<alias>`,
    `models:/<name>/<version>`) read from the current tracking store ($MLFLOW_TRACKING_URI).
    Only tensors and plain data are unpickled (`weights_only`): a file that would run code on
    loading is refused."""
    if str(path).startswith(("runs:/", "models:/")):
        from .mlflow_model import weights_file
        with tempfile.TemporaryDirectory(prefix="backdrop-model-") as d:
            return load_model(weights_file(str(path), d))
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such model file; pass a model.pt saved by platform.train, "
                        "or a runs:/<id>/model or models:/<name>@<alias> URI")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights only" not in str(e).lower():
            raise UserError(f"{path}: not a backdrop model file (UnpicklingError)") from None
        raise UserError(f"{path}: refused: it holds Python objects besides weights, and loading them "
                        "could run code; load only model files saved by backdrop") from None
    except Exception as e:
        raise UserError(f"{path}: not a backdrop model file ({type(e).__name__})") from None
    try:
        cfg = make_config(saved["config"], where=str(path))
        algorithm = get_algorithm(cfg["method"])(cfg, saved["in_channels"], saved["n_classes"], saved["size"])
        missing, unexpected = algorithm.load_state_dict(saved["state"], strict=False)
        wrong = unexpected + [k for k in missing if not k.startswith(TRAINING_ONLY)]
        if wrong:
            raise ValueError(f"weights do not match the config: {', '.join(wrong[:3])}")
        if saved.get("class_names"):
            algorithm.class_names = tuple(saved["class_names"])
        place(algorithm)
    except UserError:
        raise
    except Exception as e:
        raise UserError(f"{path}: not a backdrop model file ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    return Model(algorithm)

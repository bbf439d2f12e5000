"""The one training loop: phases × epochs × batches, shared by every method, by a single process
and by each Ray Train worker (which passes its rank, the world size and a DDP wrapper).

Per epoch it calls `on_epoch(EpochEnd)` so the caller can log, report and checkpoint; a resumed
run passes the checkpoint's `resume_state` and continues at the next epoch of the same phase.
"""
import time
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from .algorithms import get_algorithm, place
from .augment import Augment
from .evaluate import validation_scorer


@dataclass
class EpochEnd:
    phase: str
    phase_index: int
    epoch: int              # epoch within the phase, from 0
    step: int               # epoch count across all phases, from 1: the x-axis of every curve
    losses: dict
    val: dict               # validation metrics (rank 0 only; empty elsewhere)
    algorithm: object
    last: bool              # the run's final epoch
    images_per_s: float = 0.0
    position: "Position" = None

    def checkpoint(self):
        """The state to save now so that `train(..., resume_state=...)` continues after this epoch."""
        return checkpoint_state(self.algorithm, self.position)

    def metrics(self):
        out = {f"{self.phase}/{k}": v for k, v in self.losses.items()}
        out.update({f"val/{k}": v for k, v in self.val.items()})
        out["images_per_s"] = self.images_per_s
        return out


@dataclass
class Position:
    """Where a run stands: the next epoch to train is `epoch` of phase `phase_index`."""
    phase_index: int = 0
    epoch: int = 0
    step: int = 0
    extra: dict = field(default_factory=dict)


def build_algorithm(cfg, splits):
    x = splits.train.x
    torch.manual_seed(cfg["seed"])
    algorithm = get_algorithm(cfg["method"])(cfg, in_channels=x.shape[1], n_classes=splits.n_classes, size=x.shape[-1])
    algorithm.class_names = tuple(splits.class_names)
    return algorithm


def epoch_batches(n, batch_size, seed, step, rank=0, world=1):
    """Index batches for one epoch: a permutation seeded by (seed, step), sharded across ranks.
    Every rank gets the same number of full batches so DDP workers stay in lockstep."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + step))
    per_rank = n // world
    mine = perm[rank * per_rank:(rank + 1) * per_rank]
    usable = (per_rank // batch_size) * batch_size or per_rank   # tiny data: one short batch
    return list(mine[:usable].split(batch_size))


def checkpoint_state(algorithm, pos: Position):
    return {"model": algorithm.state_dict(), "optimizers": algorithm.optimizer_state(),
            "phase_index": pos.phase_index, "epoch": pos.epoch, "step": pos.step,
            **algorithm.training_state()}


def restore(algorithm, state, optimizers=True) -> Position:
    """Load a checkpoint's state; `optimizers=False` for a model that is only scored, not trained
    on (its optimisers are then never built)."""
    algorithm.load_state_dict(state["model"])
    if optimizers:
        algorithm.load_optimizer_state(state["optimizers"])
    algorithm.load_training_state(state)
    return Position(state["phase_index"], state["epoch"], state["step"])


def train(cfg, splits, *, on_epoch=None, resume_state=None, rank=0, world=1, wrap=None,
          device="cpu", progress=False, algorithm=None):
    """Train `cfg["method"]` on `splits`; returns the algorithm. See the module docstring."""
    algorithm = algorithm or build_algorithm(cfg, splits)
    place(algorithm, device)
    pos = restore(algorithm, resume_state) if resume_state else Position()
    if rank:
        algorithm.reseed(rank, pos.step)    # a checkpoint holds rank 0's streams
    if wrap is not None:
        algorithm.distribute(wrap)
    scorer = validation_scorer(splits, device) if rank == 0 else None
    augment = Augment() if cfg["augment"] else None
    train_x, train_y = splits.train.x, splits.train.y
    if torch.device(device).type == "cuda":
        # The training images live on the GPU for the whole run: a batch is an index, not a copy
        # from the host (random draws still come from CPU generators, as on the CPU).
        train_x, train_y = train_x.to(device), train_y.to(device)
    phases = algorithm.phases()
    last_phase = max((i for i, p in enumerate(phases) if p.epochs > 0), default=-1)
    scored = None           # the predictor's validation as it stands now, once scored

    for p_idx, phase in enumerate(phases):
        if p_idx < pos.phase_index or phase.epochs == 0:
            continue
        start = pos.epoch if p_idx == pos.phase_index else 0
        if start >= phase.epochs:
            continue
        masks = algorithm.begin_phase(phase.name, train_x.to(device))
        for epoch in range(start, phase.epochs):
            pos.step += 1
            algorithm.train()
            sums, count = {}, 0
            n = len(train_x)
            if phase.images:
                n = min(n, phase.images)
            batches = epoch_batches(n, cfg["batch_size"], cfg["seed"], pos.step, rank, world)
            # Seeded by (seed, rank, epoch), like the batches: a resumed run (on any rank) draws
            # the augmentations the uninterrupted run would have, with no state to checkpoint.
            aug_rng = torch.Generator().manual_seed(cfg["seed"] * 7919 + rank + 1_000_003 * pos.step)
            bar = tqdm(batches, desc=f"{phase.name} {epoch + 1}/{phase.epochs}", leave=False,
                       disable=not (progress and rank == 0))
            t0 = time.perf_counter()
            for idx in bar:
                x, y = train_x[idx].to(device), train_y[idx].to(device)
                m = masks[idx] if masks is not None else None
                if augment is not None:
                    x, *rest = augment(x, *([m] if m is not None else []), generator=aug_rng)
                    m = rest[0] if rest else None
                batch = {"x": x, "y": y}
                if m is not None:
                    batch["m"] = m
                losses = algorithm.update(phase.name, batch)
                for k, v in losses.items():
                    sums[k] = sums.get(k, 0.0) + v
                count += 1
                if count % 20 == 0:
                    bar.set_postfix({k: f"{v / count:.3f}" for k, v in sums.items()})
            elapsed = time.perf_counter() - t0
            algorithm.eval()
            # Validation reads the model and changes nothing, so skipping it between checkpoints
            # of the curve (val_every) leaves the trained model exactly as it would have been.
            due = (epoch + 1) % cfg["val_every"] == 0 or epoch + 1 == phase.epochs
            if not phase.predictor_frozen:
                scored = None           # this epoch trained the predictor: its last score is stale
            val = {}
            if scorer and due:
                if scored is None:
                    scored = scorer(algorithm.predict)
                val = dict(scored)
            pos.phase_index, pos.epoch = p_idx, epoch + 1
            if on_epoch:
                on_epoch(EpochEnd(phase.name, p_idx, epoch, pos.step, {k: v / max(count, 1) for k, v in sums.items()},
                                  val, algorithm, p_idx == last_phase and epoch + 1 == phase.epochs,
                                  count * cfg["batch_size"] * world / max(elapsed, 1e-9), pos))
            if progress and rank == 0:
                summary = " ".join(f"{k}={v / max(count, 1):.3f}" for k, v in sums.items())
                print(f"[{phase.name} {epoch + 1}/{phase.epochs}] {summary} "
                      f"val_clean={val.get('clean', float('nan')):.3f} val_worst={val.get('worst', float('nan')):.3f}",
                      flush=True)
    algorithm.eval()
    return algorithm

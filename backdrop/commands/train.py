"""`backdrop train` and `python -m platform.train` — one training run of a method, logged to MLflow.

Thin command line over backdrop.job.run_job; see `--help`."""
from backdrop import experiments
from backdrop.cli import Parser, add_hparam_flags, hparam_overrides


def build_parser(prog="python -m platform.train"):
    p = Parser(prog=prog,
               description="Train one method (vanilla, attention, adversarial) and log it to MLflow.")
    p.add_argument("--config", help="YAML file of hyperparameters (flags override it)")
    p.add_argument("--data-dir", help="folder with the IDX .gz files (or $BACKDROP_DATA_DIR); "
                                      "otherwise they are downloaded and checksum-checked")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db here)")
    p.add_argument("--experiment", default=experiments.TRAIN,
                   help=f"MLflow experiment (default: {experiments.TRAIN})")
    p.add_argument("--run-name", help="MLflow run name")
    p.add_argument("--device", default="auto", help="cpu, cuda, or auto (default)")
    p.add_argument("--workers", type=int, default=1,
                   help="Ray Train data-parallel workers (1 = plain process, no Ray)")
    p.add_argument("--storage-path", help="with --workers: where Ray Train keeps checkpoints (s3://... or a shared "
                                          "folder on a cluster; default: ./ray_results)")
    p.add_argument("--save", metavar="PATH", help="also save the model here (it is always logged to MLflow)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    add_hparam_flags(p)
    return p


def main(argv=None, prog="python -m platform.train"):
    from backdrop.hparams import load_yaml, make_config

    args = build_parser(prog).parse_args(argv)
    overrides = load_yaml(args.config) if args.config else {}
    cfg = make_config({**overrides, **hparam_overrides(args)}, where=args.config or "command line")
    if args.storage_path and args.workers < 2:
        from backdrop.errors import UserError
        raise UserError("--storage-path is where Ray Train keeps checkpoints; it needs --workers 2 or more")
    from backdrop.job import Placement, run_job
    placement = Placement("train" if args.workers > 1 else "process", workers=args.workers,
                          storage_path=args.storage_path)
    result = run_job(cfg, placement, data_dir=args.data_dir, tracking_uri=args.tracking_uri,
                     experiment=args.experiment, run_name=args.run_name, device=args.device,
                     progress=not args.quiet, save_to=args.save)
    from backdrop.results import print_run_summary
    print_run_summary(cfg, result)


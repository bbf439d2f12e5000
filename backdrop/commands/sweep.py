"""`backdrop sweep` and `python -m platform.sweep` — an Optuna (TPE) hyperparameter sweep on Ray Tune; every trial is a
data-parallel Ray Train run, recorded in MLflow (one parent run, one nested run per trial).

Thin command line over backdrop.sweep; see `--help` and docs/RAY.md."""

from backdrop import experiments
from backdrop.cli import Parser, parse_dataset
from backdrop.search_space import SWEEP_KEYS

DEFAULT_SPACE = "search_spaces/quick.yaml"


def build_parser(prog="python -m platform.sweep"):
    p = Parser(prog=prog,
               description="Search hyperparameters with Optuna's TPE sampler on Ray Tune (ASHA early stopping); "
                           "objective: val/worst, the worst validation-background accuracy (never the test backgrounds).")
    p.add_argument("--space", help=f"search-space YAML file (default: {DEFAULT_SPACE}, the small offline sweep; "
                                   "search_spaces/default.yaml is the MNIST sweep)")
    for key, k in SWEEP_KEYS.items():
        if key != "grace_period":
            default = "as the cluster fits" if key == "max_concurrent" else k.default
            p.add_argument(f"--{key.replace('_', '-')}", type=k.kind,
                           help=f"{k.help} (default: the file's sweep.{key}, else {default})")
    p.add_argument("--multi-objective", action="store_true",
                   help="search val/clean vs val/worst and report the Pareto front (no early stopping)")
    p.add_argument("--address", help="Ray cluster to join: 'auto' on a cluster node, HOST:PORT, or $RAY_ADDRESS; "
                                     "default: start a local Ray instance")
    p.add_argument("--name", help="sweep name (default: <space file>-<date>-<time>); names the MLflow parent run "
                                  "and the storage folder")
    p.add_argument("--resume", action="store_true",
                   help="continue the sweep --name (default: the latest one) with its saved settings")
    p.add_argument("--storage-path", help="where Ray keeps trials and checkpoints: s3://... or a shared "
                                          "folder on a cluster (default: ./ray_results)")
    p.add_argument("--dataset", type=parse_dataset, help="the data set, in place of the space file's: digits, mnist, fashion-mnist, "
                                     "or your own images as folder:PATH or npz:PATH")
    p.add_argument("--image-size", type=int, help="with your own images: the side they are resized to (32, 64, 128)")
    p.add_argument("--data-dir", help="folder with the MNIST IDX files (or $BACKDROP_DATA_DIR)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db here)")
    p.add_argument("--experiment", help=f"MLflow experiment (default: {experiments.SWEEPS})")
    p.add_argument("--register", metavar="NAME",
                   help="registered model that the best trial's model joins as a new version with the alias "
                        "'champion' (models:/NAME@champion; default: backdrop-<space file name>)")
    p.add_argument("--no-register", action="store_true", help="do not register the best trial's model")
    p.add_argument("--device", default="auto", help="where the selected trials are scored: cpu, cuda or auto")
    return p


def main(argv=None, prog="python -m platform.sweep"):
    args = build_parser(prog).parse_args(argv)
    # Validate the space before importing Ray (slow): a bad file is an instant one-line error.
    from backdrop.search_space import load_space
    if args.resume:
        given = [f for f in ("space", "dataset", "image_size", *SWEEP_KEYS) if getattr(args, f, None) is not None]
        given += [f for f in ("multi_objective", "register", "no_register") if getattr(args, f)]
        if given:
            from backdrop.errors import UserError
            raise UserError(f"--resume continues a sweep with its saved settings; drop --{given[0].replace('_', '-')}")
    else:
        space = load_space(args.space or DEFAULT_SPACE)
        if args.dataset is not None or args.image_size is not None:
            from backdrop.dataset_names import absolute_dataset
            space = space.with_fixed({**({"dataset": absolute_dataset(args.dataset)} if args.dataset else {}),
                                      **({"image_size": args.image_size} if args.image_size is not None else {})})

    from backdrop import sweep
    from backdrop.job import pick_device
    if args.resume:
        opts = sweep.load_options(args.storage_path, args.name)
        sweep.check_same_records(opts, vars(args))
        print(f"resuming sweep {opts.name} ({opts.path})", flush=True)
    else:
        opts = sweep.new_options(space, vars(args))
        sweep.save_options(opts)
        per = f" x {opts.seeds} seeds" if opts.seeds > 1 else ""
        print(f"sweep {opts.name}: {opts.trials} trials{per} x {opts.workers} workers, objective "
              f"{sweep.objective_name(opts)}; if interrupted, continue it with: {sweep.resume_command(opts)}", flush=True)
    try:
        summary = sweep.run_sweep(opts, resume=args.resume, address=args.address, device=pick_device(args.device))
    except KeyboardInterrupt:
        print(f"sweep {opts.name} interrupted; continue it with: {sweep.resume_command(opts)}")
        raise
    trials_md, best_md = sweep.tables(summary, opts.search_space().params)
    print(f"\nSweep {opts.name}: trials (validation accuracy %, objective {sweep.objective_name(opts)})")
    print(trials_md)
    label = ("Pareto-front trials" if opts.multi_objective else
             f"chosen config's {opts.seeds} seeds" if opts.seeds > 1 else "best trial")
    print(f"\nTest-suite accuracy (%) of the {label} — MLflow experiment '{opts.experiment}', run {opts.name}")
    print(best_md)
    print(f"\nIn the MLflow UI (`mlflow ui` where the store is): http://127.0.0.1:5000/#/experiments/"
          f"{summary['experiment_id']}/runs?workflowType=machine_learning — the model-training view")
    if summary.get("registered"):
        name, version = summary["registered"].split("/")
        print(f"\nRegistered as models:/{name}/{version}, alias '{sweep.CHAMPION}': "
              f"load it with backdrop.api.load_model('models:/{name}@{sweep.CHAMPION}')")




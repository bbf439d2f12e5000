"""`backdrop ablate` and `python -m platform.ablate` NAME [NAME ...] — ablations vs their reference, same seeds and
budget, as parallel Ray tasks, recorded in MLflow and compared from the recorded runs.

Thin command line over backdrop.ablate; specs live in ablations/*.yaml (see docs/ABLATIONS.md)."""
from backdrop import experiments
from backdrop.cli import Parser, add_hparam_flags, hparam_overrides, parse_dataset

# Budget flags: settings that both sides share. Everything else an ablation changes lives in its spec.
BUDGET_FLAGS = ("limit", "epochs_f", "epochs_mask", "epochs_adv", "batch_size", "widths", "image_size")


def build_parser(prog="python -m platform.ablate"):
    from backdrop.hparams import HPARAMS

    p = Parser(prog=prog,
               description="Compare an ablation (ablations/NAME.yaml) with its reference: both trained "
                           "with the same seeds and budget as Ray tasks, logged to MLflow, compared as "
                           "mean ± sd and a paired 95 % interval per background. The budget flags "
                           "below override the spec's budget (ablations/adversarial.yaml holds the "
                           "shared one) on both sides; their defaults are the registry's.")
    p.add_argument("names", nargs="*", metavar="name",
                   help="the ablation(s) to run (see --list); several train together and share their reference's runs")
    p.add_argument("--reference", metavar="NAME",
                   help="compare with this reference spec instead of each spec's own (e.g. adopted: the adopted "
                        "MNIST config)")
    p.add_argument("--list", action="store_true", help="list the ablations with their descriptions and exit")
    p.add_argument("--specs", metavar="DIR", help="folder of spec files (default: the repo's ablations/)")
    p.add_argument("--seeds", help="a count N (seeds 0..N-1) or a comma-separated list (default: the spec's)")
    p.add_argument("--dataset", default="digits", type=parse_dataset, help="digits (offline default), mnist, fashion-mnist, or your own images: folder:PATH or npz:PATH")
    p.add_argument("--data-dir", help="folder with the IDX .gz files (or $BACKDROP_DATA_DIR); on a cluster it "
                                      "must exist on every node")
    p.add_argument("--address", help="Ray cluster to use (auto, HOST:PORT or ray://HOST:10001); default: "
                                     "$RAY_ADDRESS if set (ray job submit sets it), else a new local instance with every core")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else "
                                          "sqlite:///mlflow.db here)")
    p.add_argument("--experiment", default=experiments.ABLATIONS,
                   help=f"MLflow experiment (default: {experiments.ABLATIONS})")
    p.add_argument("--gpus-per-run", type=float, default=0.0,
                   help="a GPU share per run (0.25: four runs at once on each GPU); default 0, the CPU")
    p.add_argument("--rerun", action="store_true",
                   help="train again even where a finished run exists for the same config and commit")
    add_hparam_flags(p, skip=[k for k in HPARAMS if k not in BUDGET_FLAGS])
    return p


def budget_overrides(args):
    return {k: v for k, v in hparam_overrides(args).items() if k in BUDGET_FLAGS}


def parse_seeds(text):
    from backdrop.errors import UserError
    from backdrop.specs import parse_seeds as check

    try:
        value = int(text) if "," not in text else [int(s) for s in text.split(",")]
    except ValueError:
        raise UserError(f"--seeds: expected a count or comma-separated integers, got {text!r}") from None
    return check(value, "--seeds")


def main(argv=None, prog="python -m platform.ablate"):
    from backdrop import specs as S

    parser = build_parser(prog)
    args = parser.parse_intermixed_args(argv)      # names may come before and after the flags
    if args.list:
        specs = S.load_specs(args.specs)
        width = max(map(len, specs))
        for s in specs.values():
            vs = "the reference" if s.is_base else f"vs {s.reference}"
            print(f"{s.name.ljust(width)}  {s.description}  [{vs}]")
        return
    if not args.names:
        parser.error("name an ablation to run, or pass --list")
    from backdrop.ablate import run_ablations
    from backdrop.results import ablation_summary

    seeds = parse_seeds(args.seeds) if args.seeds else None
    results = run_ablations(args.names, specs_dir=args.specs, reference=args.reference, dataset=args.dataset,
                            seeds=seeds, overrides=budget_overrides(args), data_dir=args.data_dir,
                            address=args.address, tracking_uri=args.tracking_uri, experiment=args.experiment,
                            rerun=args.rerun, gpus_per_run=args.gpus_per_run)
    for _, table in results:
        print()
        print(table)
    if len(results) > 1:
        print()
        print(ablation_summary([c for c, _ in results]))


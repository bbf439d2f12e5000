"""The `backdrop` console script: `backdrop train|sweep|ablate|report [flags]`, the same commands
and flags as `python -m platform.<command>` from the repo root, usable from any directory once
backdrop is installed."""
import importlib
import sys

COMMANDS = {
    "train": "one training run of a method, logged to MLflow",
    "sweep": "an Optuna search on Ray Tune over Ray Train trials; the best model is registered",
    "ablate": "an ablation against the full method, as Ray tasks",
    "report": "Table 1-style tables from MLflow, beside the paper's numbers",
    "store": "back an sqlite MLflow store up to durable storage, keep it backed up, restore it",
}


def usage():
    lines = ["usage: backdrop COMMAND [flags]   (backdrop COMMAND --help for its flags)", "", "commands:"]
    lines += [f"  {name:<8} {what}" for name, what in COMMANDS.items()]
    return "\n".join(lines)


def main(argv=None):
    from ..cli import run_main
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        sys.exit(0 if argv else 2)
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"backdrop: error: unknown command {name!r}; choose from {', '.join(COMMANDS)} (see --help)",
              file=sys.stderr)
        sys.exit(2)
    command = importlib.import_module(f"{__name__}.{name}")
    run_main(f"backdrop {name}", lambda: command.main(rest, prog=f"backdrop {name}"))

"""Shared command-line plumbing: one-line argparse errors and a flag for every hyperparameter."""
import argparse
import sys

from .errors import UserError
from .hparams import HPARAMS


class Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line (no usage dump)."""

    def error(self, message):
        print(f"{self.prog}: error: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


def parse_bool(text):
    low = str(text).lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def parse_int_list(text):
    try:
        return [int(v) for v in str(text).split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def parse_dataset(text):
    """A dataset flag checked as it is parsed, so its error names the flag."""
    from .dataset_names import check_dataset_name
    try:
        return check_dataset_name(text)
    except UserError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_hparam_flags(parser, skip=()):
    """--lr-f, --ascent-per-descent, ...: one flag per registry entry, default None (= not given)."""
    group = parser.add_argument_group("hyperparameters (defaults from backdrop/hparams.py)")
    for key, p in HPARAMS.items():
        if key in skip:
            continue
        kind = parse_dataset if key == "dataset" else {bool: parse_bool, list: parse_int_list}.get(p.type, p.type)
        default = ",".join(map(str, p.default)) if isinstance(p.default, list) else p.default
        group.add_argument("--" + key.replace("_", "-"), dest=key, type=kind, default=None,
                           choices=p.choices or None, metavar=None if p.choices else p.type.__name__.upper(),
                           help=f"{p.help} (default: {default})")


def hparam_overrides(args):
    return {k: getattr(args, k) for k in HPARAMS if getattr(args, k, None) is not None}


def run_main(prog, main):
    """Entry point wrapper: UserError → one line, exit 2."""
    from .errors import one_line_errors
    with one_line_errors(prog):
        main()


__all__ = ["Parser", "add_hparam_flags", "hparam_overrides", "run_main", "UserError"]

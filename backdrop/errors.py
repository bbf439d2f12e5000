"""User-facing errors: one line naming what is wrong and how to fix it.

Command-line entry points catch `UserError` and print it without a traceback;
anything else is a bug and keeps its traceback.
"""
import sys
from contextlib import contextmanager


class UserError(Exception):
    """Bad input from the user (a flag, a file, a dataset). Its message is the whole report."""


@contextmanager
def one_line_errors(prog: str):
    """Turn a UserError (or Ctrl-C) into a one-line message and exit status 2 (130)."""
    try:
        yield
    except UserError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; finished epochs and runs are kept", file=sys.stderr)
        sys.exit(130)

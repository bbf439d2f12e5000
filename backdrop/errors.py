"""User-facing errors: one line naming what is wrong and how to fix it.

Command-line entry points catch `UserError` and print it without a traceback;
anything else is a bug and keeps its traceback.
"""
import os
import signal
import sys
import threading
from contextlib import contextmanager


class UserError(Exception):
    """Bad input from the user (a flag, a file, a dataset). Its message is the whole report."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (`kill`, a scheduler's time limit), raised like Ctrl-C so that the same clean-up
    runs: the open MLflow run is ended as KILLED instead of being left RUNNING forever."""


def _raise_terminated(signum, frame):
    raise Terminated()


@contextmanager
def one_line_errors(prog: str):
    """Turn a UserError (or Ctrl-C, or SIGTERM) into a one-line message and exit status 2 (130, 143)."""
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if main_thread else None
    try:
        yield
    except UserError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        sys.exit(2)
    except BrokenPipeError:
        # Output piped into a reader that stopped (`... --list | head`): not an error of ours.
        # Point stdout at /dev/null so that Python's own flush at exit does not raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(1)
    except KeyboardInterrupt as e:
        how = "terminated" if isinstance(e, Terminated) else "interrupted"
        print(f"{prog}: {how}; finished epochs and runs are kept", file=sys.stderr)
        sys.exit(143 if isinstance(e, Terminated) else 130)
    finally:
        if main_thread and previous is not None:     # None: a handler installed outside Python
            signal.signal(signal.SIGTERM, previous)

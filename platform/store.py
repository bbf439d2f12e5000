"""`python -m platform.store`: the command line of backdrop/commands/store.py (also `backdrop store`)."""
from backdrop.cli import run_main
from backdrop.commands.store import main

if __name__ == "__main__":
    run_main("platform.store", main)

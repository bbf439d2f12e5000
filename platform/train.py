"""`python -m platform.train`: the command line of backdrop/commands/train.py (also `backdrop train`)."""
from backdrop.cli import run_main
from backdrop.commands.train import main

if __name__ == "__main__":
    run_main("platform.train", main)

"""`python -m platform.sweep`: the command line of backdrop/commands/sweep.py (also `backdrop sweep`)."""
from backdrop.cli import run_main
from backdrop.commands.sweep import main

if __name__ == "__main__":
    run_main("platform.sweep", main)

"""`python -m platform.ablate`: the command line of backdrop/commands/ablate.py (also `backdrop ablate`)."""
from backdrop.cli import run_main
from backdrop.commands.ablate import main

if __name__ == "__main__":
    run_main("platform.ablate", main)

"""`python -m platform.report`: the command line of backdrop/commands/report.py (also `backdrop report`)."""
from backdrop.cli import run_main
from backdrop.commands.report import main

if __name__ == "__main__":
    run_main("platform.report", main)

#!/usr/bin/env python3
"""GradWire's command line: ``python run_sim.py [SCENARIO] [--set path=value] [--out DIR]``.

Runs the built-in ``quickstart`` scenario when no scenario is given; ``--list`` shows the
built-in scenarios; ``python run_sim.py report DIR`` rebuilds tables and the dashboard of a
finished run from its results store; ``python run_sim.py validate`` checks predictions
against a real shaped network. See README.md.
"""

import sys

try:
    from gradwire.cli import main
except ModuleNotFoundError as exc:  # not installed: say how, in one line
    if exc.name and exc.name.startswith("gradwire"):
        sys.exit("gradwire is not installed: run `make run` (sets up .venv) or `pip install -e .` first")
    raise

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

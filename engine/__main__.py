"""`python -m engine ...` runs the same command line as `resnet-runs ...` (see engine/cli.py)."""

import sys

from engine.cli import main

if __name__ == "__main__":
    sys.exit(main())

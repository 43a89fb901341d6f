"""``python -m wsol.study experiments/NAME.yaml``: see `wsol.study`."""

import sys

from wsol.study.cli import main

if __name__ == "__main__":
    sys.exit(main())

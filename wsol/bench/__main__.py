"""``python -m wsol.bench``: see `wsol.bench.runner`."""

import sys

from wsol.bench.runner import main

sys.exit(main())

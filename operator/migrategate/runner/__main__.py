"""``python -m migrategate.runner``: the runner's CLI without the operator's commands."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())

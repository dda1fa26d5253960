"""Bootstrap of the injected runner: `python /migrategate/run.py <command> [options]`.

The payload is this file plus the `migrategate` package next to it. Python
normally puts a script's directory first on sys.path, but not under `-P`, `-I`
or PYTHONSAFEPATH (3.11+), so the directory is put there explicitly. Either way
`migrategate` resolves from the payload, ahead of whatever PYTHONPATH or
site-packages the application image has. Stdlib only, Python >= 3.9.
"""

import os
import sys


def _main() -> int:
    here = os.path.dirname(os.path.abspath(__file__))
    if sys.path[:1] != [here]:
        sys.path.insert(0, here)
    from migrategate.runner.cli import main

    return main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(_main())

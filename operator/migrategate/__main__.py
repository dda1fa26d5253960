"""The `migrategate` command: runner commands, plus `operator` and `crd` for the controller.

The controller is imported only for its own commands, so the runner keeps
working in application images that have neither kopf nor pydantic.
"""

from __future__ import annotations

import sys

CONTROLLER_COMMANDS = ("operator", "crd")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if args and args[0] in CONTROLLER_COMMANDS:
        from migrategate.controller.cli import main as controller_main

        return controller_main(args)
    from migrategate.runner.cli import main as runner_main

    return runner_main(args)


if __name__ == "__main__":
    sys.exit(main())

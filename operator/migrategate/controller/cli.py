"""`migrategate operator` and `migrategate crd`."""

from __future__ import annotations

import argparse
import logging
import os
import random
import socket
import sys
import time
from pathlib import Path
from typing import Any

from migrategate.controller import settings as settings_mod


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="migrategate")
    sub = p.add_subparsers(dest="command", required=True)
    op = sub.add_parser(
        "operator",
        help="Run the DatabaseMigration operator.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Environment:\n" + settings_mod.describe(),
    )
    op.add_argument(
        "--namespace",
        "-n",
        action="append",
        dest="namespaces",
        help="Watch this namespace (repeatable). Default: MIGRATEGATE_NAMESPACES, else all.",
    )
    op.add_argument("--runner-image", help="Image with the runner payload (inject mode).")
    op.add_argument("--peering", help="kopf peering name, for more than one replica.")
    op.add_argument("--liveness-port", type=int, help="/healthz port; 0 disables it.")
    op.add_argument("--metrics-port", type=int, help="/metrics port; 0 disables it.")
    op.add_argument("--verbose", "-v", action="store_true", help="Debug logging.")
    crd = sub.add_parser("crd", help="Write the DatabaseMigration CRD generated from the models.")
    crd.add_argument(
        "--output",
        "-o",
        default="crds",
        help="Directory to write it to, or - for stdout (default: crds).",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.command == "crd":
        return _crd(args.output)
    return _operator(args)


def _crd(output: str) -> int:
    from migrategate.api import crd

    if output == "-":
        sys.stdout.write(crd.render())
    else:
        print(crd.write(Path(output)))
    return 0


def _operator(args: argparse.Namespace) -> int:
    import kopf

    from migrategate.controller.handlers import build_registry

    try:
        ours = settings_mod.Settings.from_env(
            namespaces=tuple(args.namespaces) if args.namespaces else None,
            runner_image=args.runner_image,
            peering=args.peering,
            liveness_port=args.liveness_port,
            metrics_port=args.metrics_port,
            log_level="DEBUG" if args.verbose else None,
        )
        settings_mod.job_defaults(ours)  # a bad value fails here, not at the first Job
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    kopf.configure(verbose=ours.log_level == "DEBUG", log_format=kopf.LogFormat.JSON)
    logging.getLogger().setLevel(ours.log_level)
    kopf.run(registry=build_registry(), memo=kopf.Memo(settings=ours), **run_options(ours))
    return 0


def run_options(ours: settings_mod.Settings, started: float | None = None) -> dict[str, Any]:
    """kopf.run's scope, peering and liveness arguments for these settings.

    `started`: this process's start (epoch seconds), which orders the peering replicas.
    """
    liveness = f"http://0.0.0.0:{ours.liveness_port}/healthz" if ours.liveness_port else None
    return {
        "namespaces": list(ours.namespaces),
        "clusterwide": not ours.namespaces,
        # A single replica runs standalone; peering only when several replicas share the work.
        "standalone": not ours.peering,
        "peering_name": ours.peering or None,
        "priority": peering_priority(ours, time.time() if started is None else started),
        "liveness_endpoint": liveness,
        "identity": peering_identity(),
    }


def peering_identity() -> str:
    """This replica's name in the peering object: the pod's (host) name and the pid.

    kopf's default asks the password database for the user's name, which fails for a
    numeric USER without a passwd entry (65532 in our image): the pod crashed at start.
    """
    return f"{socket.gethostname()}/{os.getpid()}"


def peering_priority(
    ours: settings_mod.Settings, started: float, tiebreak: int | None = None
) -> int:
    """This replica's kopf peering priority: the older the process, the higher.

    kopf pauses a replica that sees a live peer of higher priority, and every replica
    that sees one of equal priority (so, with kopf's default of 0 for all, every one).
    Ordering by start time lets exactly one serve, and a replica that starts later
    (a rollout, a scale-up) waits instead of taking over from one that is working.
    Milliseconds since the epoch, times 1000 plus a random tiebreak for two replicas
    started in the same millisecond; negative, so a fixed priority of 0 or more (an
    operator started by hand with MIGRATEGATE_PEERING_PRIORITY) beats them all.
    """
    if ours.peering_priority:
        return int(ours.peering_priority)
    if tiebreak is None:
        tiebreak = random.randrange(1000)
    return -(int(started * 1000) * 1000 + tiebreak)

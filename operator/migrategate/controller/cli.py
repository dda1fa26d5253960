"""`migrategate operator` and `migrategate crd`."""

from __future__ import annotations

import argparse
import logging
import sys
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


def run_options(ours: settings_mod.Settings) -> dict[str, Any]:
    """kopf.run's scope, peering and liveness arguments for these settings."""
    liveness = f"http://0.0.0.0:{ours.liveness_port}/healthz" if ours.liveness_port else None
    return {
        "namespaces": list(ours.namespaces),
        "clusterwide": not ours.namespaces,
        # A single replica runs standalone; peering only when several replicas share the work.
        "standalone": not ours.peering,
        "peering_name": ours.peering or None,
        "liveness_endpoint": liveness,
    }

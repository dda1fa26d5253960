"""``migrategate migrate|wait|check|url``: an explicit argparse parser built from contract.OPTIONS.

Every option is a flag or an environment variable (the flag wins), read at call
time. ``main`` is the one place where typed errors become exit codes, a one-line
message and the JSON result.
"""

import argparse
import os
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, NoReturn, Optional, TextIO

from .. import __version__
from .contract import (
    COMMANDS,
    DEFAULT_CONTRACT_BRANCH,
    MIGRATE_OPTIONS,
    OPTIONS,
    PHASE_COMMANDS,
    PHASE_OPTIONS,
    PLAN_OPTIONS,
    X_ARG_ENV,
    X_ARG_FLAG,
    ErrorClass,
    ExitCode,
    Option,
    Outcome,
)
from .errors import BadInput, RunnerError, Terminated, first_line
from .masking import Masker
from .quick import at_target
from .result import Result, write_result
from .settings import Settings, option_value
from .stopping import TERMINATED_MESSAGE, StopOnSigterm

COMMAND_HELP = {
    "migrate": "upgrade the database to the target (head by default)",
    "wait": "block until the database is at the target (init container without the operator)",
    "check": "print current and target heads; exit 0 at the target, 1 if an upgrade is pending",
    "url": "print the derived sync URL, password masked",
    "plan": "print the pending revisions' SQL (rendered offline), lint it and hash it; no writes",
}


class Parser(argparse.ArgumentParser):
    """argparse that raises BadInput instead of exiting, and writes to the injected stream."""

    stream: TextIO = sys.stdout

    def error(self, message: str) -> NoReturn:
        raise BadInput(f"{message}: see `migrategate {{migrate,wait,check,url}} --help`")

    def _print_message(self, message: str, file: Any = None) -> None:
        if message:
            self.stream.write(message)


def build_parser(stream: TextIO) -> Parser:
    """The parser: one subcommand per contract.COMMANDS, each with every contract option."""
    common = Parser(add_help=False)
    _add_options(common, OPTIONS)
    common.add_argument(
        X_ARG_FLAG,
        dest="x_args",
        action="append",
        default=None,
        metavar="KEY=VALUE",
        help=f"for env.py's context.get_x_argument(); repeatable [env {X_ARG_ENV}, one a line]",
    )
    parser = Parser(prog="migrategate", description="Run Alembic migrations, exactly once.")
    parser.add_argument("--version", action="version", version=f"migrategate {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for name in COMMANDS:
        command = sub.add_parser(name, parents=[common], help=COMMAND_HELP[name])
        if name == "plan":
            _add_options(command, PLAN_OPTIONS)
        if name == "migrate":
            _add_options(command, MIGRATE_OPTIONS)
        if name in PHASE_COMMANDS:
            _add_options(command, PHASE_OPTIONS)
        if name == "url":
            command.add_argument(
                "--show-password", action="store_true", help="print the password (for scripts)"
            )
    for each in (common, parser, *sub.choices.values()):
        each.stream = stream
    return parser


def _number(name: str, value: str) -> float:
    """A non-negative number of seconds, or BadInput naming the option."""
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not number >= 0:
        raise BadInput(f"{name} must be a number of seconds >= 0, not {value!r}")
    return number


def _count(name: str, value: str) -> int:
    """A whole number >= 0, or BadInput naming the option."""
    if not value.strip().isdigit():
        raise BadInput(f"{name} must be a whole number >= 0, not {value!r}")
    return int(value)


def settings_from(args: argparse.Namespace, environ: Mapping[str, str]) -> Settings:
    """Flags first, then the options' environment variables, then their defaults."""
    # Every option but --result-file has a default, so only that one can be empty.
    values = {o.name: option_value(o, getattr(args, o.name), environ) or "" for o in OPTIONS}
    x_args = args.x_args
    if x_args is None:
        x_args = [line.strip() for line in environ.get(X_ARG_ENV, "").splitlines() if line.strip()]
    phase, contract_branch = _phase_options(args, environ)
    return Settings(
        config=values["config"],
        section=values["section"],
        target=values["target"],
        database_url_env=values["database_url_env"],
        driver=values["driver"],
        lock_timeout=_number("--lock-timeout", values["lock_timeout"]),
        pg_lock_timeout=_number("--pg-lock-timeout", values["pg_lock_timeout"]),
        statement_timeout=_number("--statement-timeout", values["statement_timeout"]),
        lock_retries=_count("--lock-retries", values["lock_retries"]),
        result_file=values["result_file"] or None,
        if_ahead=values["if_ahead"],
        timeout=_number("--timeout", values["timeout"]),
        x_args=tuple(x_args),
        show_password=bool(getattr(args, "show_password", False)),
        plan_hash=_plan_hash(args, environ),
        phase=phase,
        contract_branch=contract_branch,
    )


def _phase_options(
    args: argparse.Namespace, environ: Mapping[str, str]
) -> tuple[Optional[str], str]:
    """``--phase`` and ``--contract-branch`` (flag, then environment, then default)."""
    if getattr(args, "command", None) not in PHASE_COMMANDS:
        return None, DEFAULT_CONTRACT_BRANCH
    phase, branch = (option_value(o, getattr(args, o.name) or None, environ) for o in PHASE_OPTIONS)
    return phase, branch or DEFAULT_CONTRACT_BRANCH


def _plan_hash(args: argparse.Namespace, environ: Mapping[str, str]) -> Optional[str]:
    """``migrate``'s approved planHash (flag, then environment); None for other commands."""
    if getattr(args, "command", None) != "migrate":
        return None
    (option,) = MIGRATE_OPTIONS
    value = option_value(option, getattr(args, option.name) or None, environ) or ""
    return value.strip().lower() or None


def ensure_cwd_importable() -> None:
    """Put the working directory on sys.path (as ``python -m`` does) for env.py's imports."""
    cwd = os.getcwd()
    if not any(os.path.abspath(entry or ".") == cwd for entry in sys.path):
        sys.path.insert(0, cwd)


def main(
    argv: Optional[list[str]] = None,
    stream: Optional[TextIO] = None,
    environ: Optional[Mapping[str, str]] = None,
) -> int:
    """Run one command; return its exit code. Never raises, never prints a traceback."""
    out = stream if stream is not None else sys.stdout
    env = os.environ if environ is None else environ
    started = time.monotonic()
    with StopOnSigterm() as sigterm:
        try:
            invocation, result = _run(argv, out, env, sigterm)
        except SystemExit as done:  # --help, --version
            return int(done.code or 0)
        finally:
            sigterm.raising = False  # the outcome is known: a late SIGTERM changes nothing
        if sigterm.received and result.exit_code not in (ExitCode.OK, ExitCode.TERMINATED):
            # Whatever the interruption turned into (a cancelled statement, a lost
            # connection), the cause was the SIGTERM: worth another try, not a verdict.
            result = _failed(result, ExitCode.TERMINATED, ErrorClass.TERMINATED, TERMINATED_MESSAGE)
        result = replace(
            result, duration_seconds=time.monotonic() - started, runner_version=__version__
        )
        _finish(invocation, result, out)
    return int(result.exit_code)


@dataclass(frozen=True)
class Invocation:
    """The command line as parsed: which command, with which settings, masking what."""

    command: str
    settings: Settings
    masker: Masker


def _run(
    argv: Optional[list[str]], out: TextIO, env: Mapping[str, str], sigterm: StopOnSigterm
) -> tuple[Optional[Invocation], Result]:
    """Parse and run the command; its result, or the typed failure as one.

    The invocation is None when the command line did not parse. SystemExit (``--help``,
    ``--version``) goes through: nothing to report then.
    """
    invocation: Optional[Invocation] = None
    try:
        args = build_parser(out).parse_args(sys.argv[1:] if argv is None else list(argv))
        settings = settings_from(args, env)
        raw_url = env.get(settings.database_url_env, "")
        # Set before the quick path, so a SIGTERM during it still writes the result file.
        invocation = Invocation(args.command, settings, Masker.for_text(raw_url))
        quick = at_target(args.command, settings, env)
        if quick is not None:
            return invocation, quick
        masker = Masker.for_url(raw_url)
        invocation = Invocation(args.command, settings, masker)
        ensure_cwd_importable()
        sigterm.start_canceller()
        return invocation, _run_command(args, settings, env, out, masker)
    except RunnerError as error:
        known = error.result or Result()
        failed = replace(known, failed_revision=error.failed_revision or known.failed_revision)
        return invocation, _failed(failed, error.exit_code, error.error_class, error.message)
    except Terminated as stop:
        known = stop.result or Result()
        return invocation, _failed(known, ExitCode.TERMINATED, ErrorClass.TERMINATED, stop.message)
    except KeyboardInterrupt:
        return invocation, _failed(
            Result(), ExitCode.TRANSIENT, ErrorClass.TRANSIENT, "interrupted"
        )
    except Exception as error:  # a bug, or something env.py raised that we did not classify
        text = f"unexpected error: {first_line(error)}"
        return invocation, _failed(
            Result(), ExitCode.MIGRATION_FAILED, ErrorClass.MIGRATION_FAILED, text
        )


def _run_command(
    args: argparse.Namespace,
    settings: Settings,
    env: Mapping[str, str],
    out: TextIO,
    masker: Masker,
) -> Result:
    """The full path: the command, through Alembic (imported here, after the quick path)."""
    from .commands import COMMAND_FUNCTIONS
    from .plan import PlanOptions, plan

    if args.command == "plan":
        return plan(settings, PlanOptions.from_args(args, env), env, out, masker)
    return COMMAND_FUNCTIONS[args.command](settings, env, out, masker)


def _failed(known: Result, code: ExitCode, error_class: ErrorClass, message: str) -> Result:
    """``known`` as the result of a failed run."""
    return replace(
        known,
        exit_code=code,
        error_class=error_class.value,
        outcome=Outcome.FAILED.value,
        message=message,
    )


def _finish(invocation: Optional[Invocation], result: Result, out: TextIO) -> None:
    """Print the summary and warnings (masked), and write the result file."""
    masker = invocation.masker if invocation is not None else Masker()
    command = invocation.command if invocation is not None else ""
    if command != "url" or result.exit_code:
        for warning in result.warnings:
            out.write(masker(f"warning: {warning}\n"))
        prefix = "error: " if result.error_class else ""
        out.write(masker(f"{prefix}{result.message}\n"))
    result_file = invocation.settings.result_file if invocation is not None else None
    if result_file and command != "url":
        try:
            write_result(result_file, result, masker)
        except OSError as error:
            out.write(f"error: cannot write the result file {result_file}: {error.strerror}\n")


def _add_options(parser: argparse.ArgumentParser, options: Iterable[Option]) -> None:
    """One argparse option per contract option; unset ones fall back to their env var."""
    for option in options:
        default = "" if option.default is None else f", default {option.default}"
        parser.add_argument(
            option.flag,
            dest=option.name,
            default=None,
            choices=option.choices,
            help=f"{option.help} [env {option.env}{default}]",
        )

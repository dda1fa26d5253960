"""``migrategate migrate|wait|check|url``: an explicit argparse parser built from contract.OPTIONS.

Every option is a flag or an environment variable (the flag wins), read at call
time. ``main`` is the one place where typed errors become exit codes, a one-line
message and the JSON result.
"""

import argparse
import os
import sys
import time
from collections.abc import Mapping
from typing import Any, NoReturn, Optional, TextIO

from .. import __version__
from .commands import COMMAND_FUNCTIONS, Settings
from .contract import (
    COMMANDS,
    MIGRATE_OPTIONS,
    OPTIONS,
    PHASE_COMMANDS,
    PHASE_OPTIONS,
    X_ARG_ENV,
    X_ARG_FLAG,
    ErrorClass,
    ExitCode,
    Outcome,
)
from .errors import BadInput, RunnerError, Terminated
from .plan import PLAN_OPTIONS, PlanOptions, plan
from .result import Report, write_result
from .scripts import first_line
from .stopping import TERMINATED_MESSAGE, StopOnSigterm
from .urls import mask, secrets_of_raw

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
    for option in OPTIONS:
        default = "" if option.default is None else f", default {option.default}"
        common.add_argument(
            option.flag,
            dest=option.name,
            default=None,
            choices=option.choices,
            help=f"{option.help} [env {option.env}{default}]",
        )
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
    values = {}
    for option in OPTIONS:
        value = getattr(args, option.name)
        if value is None:
            value = environ.get(option.env) or option.default
            if value is not None and option.choices and value not in option.choices:
                raise BadInput(f"{option.env}={value!r} is not one of {', '.join(option.choices)}")
        values[option.name] = value
    x_args = args.x_args
    if x_args is None:
        x_args = [line.strip() for line in environ.get(X_ARG_ENV, "").splitlines() if line.strip()]
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
        **_phase_options(args, environ),
    )


def _phase_options(args: argparse.Namespace, environ: Mapping[str, str]) -> dict:
    """``--phase`` and ``--contract-branch`` (flag, then environment, then default)."""
    values: dict = {}
    if getattr(args, "command", None) not in PHASE_COMMANDS:
        return values
    for option in PHASE_OPTIONS:
        value = getattr(args, option.name, None) or environ.get(option.env) or option.default
        if value is not None and option.choices and value not in option.choices:
            raise BadInput(f"{option.env}={value!r} is not one of {', '.join(option.choices)}")
        values[option.name] = value
    return values


def _plan_hash(args: argparse.Namespace, environ: Mapping[str, str]) -> Optional[str]:
    """``migrate``'s approved planHash (flag, then environment); None for other commands."""
    if getattr(args, "command", None) != "migrate":
        return None
    (option,) = MIGRATE_OPTIONS
    value = getattr(args, option.name, None) or environ.get(option.env) or ""
    return value.strip().lower() or None


def ensure_cwd_importable() -> None:
    """Put the working directory on sys.path (as ``python -m`` does) for env.py's imports."""
    cwd = os.getcwd()
    if not any(os.path.abspath(entry or ".") == cwd for entry in sys.path):
        sys.path.insert(0, cwd)


def main(
    argv: Optional[list] = None,
    stream: Optional[TextIO] = None,
    environ: Optional[Mapping[str, str]] = None,
) -> int:
    """Run one command; return its exit code. Never raises, never prints a traceback."""
    out = stream if stream is not None else sys.stdout
    env = os.environ if environ is None else environ
    report = Report(runner_version=__version__)
    started = time.monotonic()
    with StopOnSigterm() as sigterm:
        try:
            command, settings = _run(argv, out, env, report)
        except SystemExit as done:  # --help, --version
            return int(done.code or 0)
        finally:
            sigterm.raising = False  # the outcome is known: a late SIGTERM changes nothing
        if sigterm.received and report.exit_code not in (ExitCode.OK, ExitCode.TERMINATED):
            # Whatever the interruption turned into (a cancelled statement, a lost
            # connection), the cause was the SIGTERM: worth another try, not a verdict.
            _failed(report, ExitCode.TERMINATED, ErrorClass.TERMINATED.value, TERMINATED_MESSAGE)
        report.duration_seconds = time.monotonic() - started
        _finish(command, settings, report, out)
    return int(report.exit_code)


def _run(
    argv: Optional[list], out: TextIO, env: Mapping[str, str], report: Report
) -> "tuple[str, Optional[Settings]]":
    """Parse and run the command, recording its outcome (or typed failure) in the report.

    SystemExit (``--help``, ``--version``) goes through: nothing to report then."""
    settings: Optional[Settings] = None
    command = ""
    try:
        args = build_parser(out).parse_args(sys.argv[1:] if argv is None else list(argv))
        command = args.command
        settings = settings_from(args, env)
        report.secrets = secrets_of_raw(env.get(settings.database_url_env, ""))
        ensure_cwd_importable()
        if command == "plan":
            report.exit_code = plan(settings, PlanOptions.from_args(args, env), env, out, report)
        else:
            report.exit_code = COMMAND_FUNCTIONS[command](settings, env, out, report)
    except RunnerError as error:
        _failed(report, error.exit_code, error.error_class.value, error.message)
        report.failed_revision = getattr(error, "failed_revision", None) or report.failed_revision
    except Terminated:
        _failed(report, ExitCode.TERMINATED, ErrorClass.TERMINATED.value, TERMINATED_MESSAGE)
    except KeyboardInterrupt:
        _failed(report, ExitCode.TRANSIENT, ErrorClass.TRANSIENT.value, "interrupted")
    except Exception as error:  # a bug, or something env.py raised that we did not classify
        text = f"unexpected error: {first_line(error)}"
        _failed(report, ExitCode.MIGRATION_FAILED, ErrorClass.MIGRATION_FAILED.value, text)
    return command, settings


def _failed(report: Report, code: int, error_class: str, message: str) -> None:
    """Record a failure in the report."""
    report.exit_code = code
    report.error_class = error_class
    report.outcome = Outcome.FAILED.value
    report.message = message


def _finish(command: str, settings: Optional[Settings], report: Report, out: TextIO) -> None:
    """Print the summary and warnings (masked), and write the result file."""
    if command != "url" or report.exit_code:
        for warning in report.warnings:
            out.write(mask(f"warning: {warning}\n", report.secrets))
        prefix = "error: " if report.error_class else ""
        out.write(mask(f"{prefix}{report.message}\n", report.secrets))
    if settings is not None and settings.result_file and command != "url":
        try:
            write_result(settings.result_file, report)
        except OSError as error:
            out.write(
                f"error: cannot write the result file {settings.result_file}: {error.strerror}\n"
            )


def _add_options(command: argparse.ArgumentParser, options: Any) -> None:
    """One argparse option per contract option; unset ones fall back to their env var."""
    for option in options:
        command.add_argument(
            option.flag,
            dest=option.name,
            default=None,
            choices=option.choices,
            help=f"{option.help} [env {option.env}]",
        )

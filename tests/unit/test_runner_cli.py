"""The CLI: parser built from contract.OPTIONS, env fallback, exit codes, result file, masking."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import samples
from migrategate.runner import cli, commands, contract, errors
from migrategate.runner.contract import ExitCode, ResultKey
from migrategate.runner.result import Result

SECRET = "Hunter2-Pw%40x"


def run(argv: list[str], environ: dict[str, str] | None = None) -> tuple[int, str]:
    out = io.StringIO()
    code = cli.main(argv, stream=out, environ=environ or {})
    return code, out.getvalue()


def test_every_contract_option_is_a_flag_of_every_command() -> None:
    parser = cli.build_parser(io.StringIO())
    for command in contract.COMMANDS:
        argv = [command]
        for option in contract.OPTIONS:
            argv += [option.flag, option.choices[0] if option.choices else "7"]
        args = parser.parse_args(argv)
        for option in contract.OPTIONS:
            expected = option.choices[0] if option.choices else "7"
            assert getattr(args, option.name) == expected


def test_environment_fills_options_and_flags_win() -> None:
    parser = cli.build_parser(io.StringIO())
    environ = {o.env: (o.choices[-1] if o.choices else "11") for o in contract.OPTIONS}
    environ[contract.X_ARG_ENV] = "a=1\n\nb=2\n"
    settings = cli.settings_from(parser.parse_args(["migrate", "--target", "abc"]), environ)
    assert settings.target == "abc"
    assert settings.config == "11" and settings.section == "11"
    assert settings.lock_timeout == 11.0 and settings.timeout == 11.0
    assert settings.driver == "asyncpg" and settings.if_ahead == "fail"
    assert settings.x_args == ("a=1", "b=2")
    flagged = cli.settings_from(parser.parse_args(["migrate", "-x", "c=3"]), environ)
    assert flagged.x_args == ("c=3",)


def test_defaults_come_from_the_contract() -> None:
    settings = cli.settings_from(cli.build_parser(io.StringIO()).parse_args(["check"]), {})
    defaults = {o.name: o.default for o in contract.OPTIONS}
    assert settings.config == defaults["config"] and settings.target == defaults["target"]
    assert settings.lock_timeout == float(defaults["lock_timeout"])
    assert settings.result_file is None


@pytest.mark.parametrize(
    ("argv", "environ", "fragment"),
    [
        (["migrate", "--driver", "mysqldb"], {}, "invalid choice"),
        (["migrate"], {"MIGRATEGATE_DRIVER": "odbc"}, "MIGRATEGATE_DRIVER='odbc'"),
        (["migrate", "--lock-timeout", "soon"], {}, "--lock-timeout must be"),
        (["wait", "--timeout", "-3"], {}, "--timeout must be"),
        (["explode"], {}, "invalid choice"),
        ([], {}, "required"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(argv: list[str], environ: dict, fragment: str) -> None:
    code, output = run(argv, environ)
    assert code == ExitCode.BAD_INPUT
    assert fragment in output
    assert output.count("\n") == 1 and "Traceback" not in output


def test_missing_url_writes_a_masked_result(tmp_path: Path) -> None:
    result = tmp_path / "out" / "result.json"
    code, output = run(["migrate", "--result-file", str(result)], {})
    assert code == ExitCode.BAD_INPUT
    assert "DATABASE_URL is not set" in output
    data = json.loads(result.read_text())
    assert data[ResultKey.EXIT_CODE] == 2
    assert data[ResultKey.ERROR_CLASS] == contract.ErrorClass.BAD_INPUT.value
    assert data[ResultKey.OUTCOME] == contract.Outcome.FAILED.value
    every = {v for k, v in vars(ResultKey).items() if k.isupper()}
    assert set(data) == every - {ResultKey.STALE_PLAN}  # only on a refused --plan-hash


def test_malformed_url_never_shows_the_password(tmp_path: Path) -> None:
    result = tmp_path / "r.json"
    environ = {"DATABASE_URL": f"postgresql+asyncpg://app:{SECRET}@db:port/shop"}
    code, output = run(["migrate", "--result-file", str(result)], environ)
    assert code == ExitCode.BAD_INPUT
    assert "not a valid database URL" in output
    for text in (output, result.read_text()):
        assert SECRET not in text and "Hunter2" not in text


def test_url_command_masks_unless_show_password() -> None:
    environ = {"DATABASE_URL": f"postgresql+asyncpg://app:{SECRET}@db:5432/shop?ssl=require"}
    code, output = run(["url", "--driver", "psycopg"], environ)
    assert code == 0
    assert output.strip() == "postgresql+psycopg://app:***@db:5432/shop?sslmode=require"
    code, output = run(["url", "--driver", "psycopg", "--show-password"], environ)
    assert code == 0 and SECRET in output


def test_missing_config_is_bad_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    environ = {"DATABASE_URL": f"postgresql+asyncpg://app:{SECRET}@127.0.0.1:1/shop"}
    code, output = run(["check"], environ)
    assert code == ExitCode.BAD_INPUT
    assert "alembic.ini" in output and "--config" in output and SECRET not in output


def test_a_failed_run_still_reports_what_it_had_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(samples.materialize("seed004_ini_url", "v1", tmp_path / "app"))
    result = tmp_path / "r.json"
    environ = {"DATABASE_URL": f"postgresql+asyncpg://app:{SECRET}@127.0.0.1:1/shop"}
    code, output = run(["check", "--driver", "psycopg", "--result-file", str(result)], environ)
    assert code == ExitCode.TRANSIENT, output
    data = json.loads(result.read_text())
    assert data[ResultKey.DRIVER] == "psycopg"
    assert data[ResultKey.TARGET_REVISIONS] == ["0003"]
    assert data[contract.PhaseKey.PHASE] == contract.Phase.ALL.value
    assert SECRET not in output + result.read_text()


def test_help_goes_to_the_injected_stream() -> None:
    code, output = run(["migrate", "--help"])
    assert code == 0
    for option in contract.OPTIONS:
        assert option.flag in output and option.env in output


def test_cwd_becomes_importable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    cli.ensure_cwd_importable()
    assert sys.path[0] == str(tmp_path)
    before = list(sys.path)
    cli.ensure_cwd_importable()
    assert sys.path == before


# ----------------------------------------------------------------------------- SIGTERM
# A Job's runner is its container's PID 1: the kernel delivers SIGTERM to it only if it has a
# handler. With one, a deleted, evicted or drained pod stops at once (exit 143, transient).


def _sigterm_self() -> None:
    os.kill(os.getpid(), signal.SIGTERM)


def test_sigterm_stops_a_command_with_exit_143_and_a_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def blocks(settings, environ, out, masker):
        _sigterm_self()
        time.sleep(30)  # the handler's exception ends the sleep
        raise AssertionError("not interrupted")

    monkeypatch.setitem(commands.COMMAND_FUNCTIONS, "migrate", blocks)
    before = signal.getsignal(signal.SIGTERM)
    result = tmp_path / "result.json"
    started = time.monotonic()
    code, output = run(["migrate", "--result-file", str(result)])
    assert time.monotonic() - started < 5
    assert code == ExitCode.TERMINATED == 143 and code in contract.TRANSIENT_EXIT_CODES
    assert "stopped by SIGTERM" in output
    data = json.loads(result.read_text())
    assert data[ResultKey.EXIT_CODE] == 143
    assert data[ResultKey.ERROR_CLASS] == contract.ErrorClass.TERMINATED.value
    assert signal.getsignal(signal.SIGTERM) is before  # the caller's handler is back


def test_a_sigterm_during_the_quick_path_still_leaves_a_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def reads_slowly(command, settings, environ):
        _sigterm_self()
        time.sleep(30)  # as a connect to a slow server would
        raise AssertionError("not interrupted")

    monkeypatch.setattr(cli, "at_target", reads_slowly)
    result = tmp_path / "result.json"
    code, output = run(["migrate", "--result-file", str(result)])
    assert code == ExitCode.TERMINATED and "stopped by SIGTERM" in output
    assert json.loads(result.read_text())[ResultKey.EXIT_CODE] == 143


def test_whatever_a_sigterm_turned_into_it_stays_transient(monkeypatch: pytest.MonkeyPatch) -> None:
    # e.g. a driver that cancels the statement on the interrupt and raises the server's
    # "canceling statement due to user request", which would read as a failed revision.
    def cancelled(settings, environ, out, masker):
        try:
            _sigterm_self()
            time.sleep(30)
        except BaseException:
            raise errors.MigrationFailed("revision 0004 failed: canceling statement") from None

    monkeypatch.setitem(commands.COMMAND_FUNCTIONS, "migrate", cancelled)
    code, output = run(["migrate"])
    assert code == ExitCode.TERMINATED
    assert "stopped by SIGTERM" in output and "0004" not in output


def test_a_second_sigterm_does_not_cut_the_clean_up_short(monkeypatch: pytest.MonkeyPatch) -> None:
    cleaned = []

    def cleans_up(settings, environ, out, masker):
        try:
            _sigterm_self()
            time.sleep(30)
        finally:
            _sigterm_self()  # the kubelet may repeat itself; closing connections goes on
            cleaned.append(True)

    monkeypatch.setitem(commands.COMMAND_FUNCTIONS, "migrate", cleans_up)
    code, _ = run(["migrate"])
    assert code == ExitCode.TERMINATED and cleaned == [True]


def test_a_sigterm_once_the_outcome_is_known_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def done(settings, environ, out, masker):
        return Result(outcome=contract.Outcome.SUCCEEDED.value, message="upgraded")

    real_write = cli.write_result

    def term_while_writing(path, result, masker):
        _sigterm_self()
        real_write(path, result, masker)

    monkeypatch.setitem(commands.COMMAND_FUNCTIONS, "migrate", done)
    monkeypatch.setattr(cli, "write_result", term_while_writing)
    result = tmp_path / "result.json"
    code, output = run(["migrate", "--result-file", str(result)])
    assert code == ExitCode.OK and "upgraded" in output
    assert json.loads(result.read_text())[ResultKey.EXIT_CODE] == 0


def test_the_runner_process_exits_143_on_sigterm(tmp_path: Path) -> None:
    """A real process, blocked as the runner is while it waits for a lock."""
    script = (
        "import sys, time\n"
        "from migrategate.runner import cli, commands\n"
        "def blocks(settings, environ, out, masker):\n"
        "    print('blocking', flush=True)\n"
        "    time.sleep(60)\n"
        "commands.COMMAND_FUNCTIONS['migrate'] = blocks\n"
        "sys.exit(cli.main())\n"
    )
    result = tmp_path / "result.json"
    argv = [sys.executable, "-c", script, "migrate", "--result-file", str(result)]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "blocking"
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 143
        assert time.monotonic() - started < 5
    assert json.loads(result.read_text())[ResultKey.ERROR_CLASS] == "Terminated"


def test_plan_hash_is_migrates_own_option_flag_or_environment():
    parser = cli.build_parser(io.StringIO())
    environ = {"MIGRATEGATE_PLAN_HASH": "ABC123 "}
    assert cli.settings_from(parser.parse_args(["migrate"]), environ).plan_hash == "abc123"
    flagged = parser.parse_args(["migrate", "--plan-hash", "def"])
    assert cli.settings_from(flagged, environ).plan_hash == "def"
    assert cli.settings_from(parser.parse_args(["migrate"]), {}).plan_hash is None
    # Other commands neither take it nor read its variable.
    assert cli.settings_from(parser.parse_args(["plan"]), environ).plan_hash is None
    with pytest.raises(errors.BadInput):
        parser.parse_args(["check", "--plan-hash", "abc"])

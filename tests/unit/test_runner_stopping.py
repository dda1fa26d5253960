"""SIGTERM stops the runner: the handler's exception, and the helper thread that cancels the
statements of drivers a Python signal handler cannot interrupt (psycopg2)."""

from __future__ import annotations

import os
import signal
import threading

import pytest
from migrategate.runner import stopping
from migrategate.runner.errors import Terminated
from sqlalchemy import create_engine


class FakeConnection:
    """Stands in for a psycopg2 connection: ``closed`` is 0 while open."""

    def __init__(self, closed: int = 0) -> None:
        self.closed = closed
        self.cancelled = threading.Event()

    def cancel(self) -> None:
        self.cancelled.set()


@pytest.fixture
def fake_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stopping, "UNINTERRUPTIBLE_DRIVERS", (__name__,))


def wakeup_fd() -> int:
    current = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(current)
    return current


def test_sigterm_cancels_the_open_connections_from_a_helper_thread(fake_driver) -> None:
    open_, closed = FakeConnection(), FakeConnection(closed=1)
    with stopping.StopOnSigterm() as stop:
        stop.start_canceller()
        stop.track(open_)
        stop.track(closed)
        with pytest.raises(Terminated):
            os.kill(os.getpid(), signal.SIGTERM)
            # The main thread may be stuck in libpq, where no Python handler runs: the
            # helper thread, woken by the C-level handler, cancels the statement anyway.
            open_.cancelled.wait(10)
        assert open_.cancelled.wait(10)
        assert not closed.cancelled.is_set()
        assert stop.received


def test_only_the_listed_drivers_connections_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stopping, "UNINTERRUPTIBLE_DRIVERS", ("sqlite3",))
    before = wakeup_fd()
    with stopping.StopOnSigterm() as stop:
        stop.start_canceller()
        engine = create_engine("sqlite://")  # any pool, opened by the runner or by env.py
        with engine.connect():
            pass
        assert [type(c).__module__ for c in stop.connections] == ["sqlite3"]
        stop.track(FakeConnection())  # not a listed driver
        assert len(stop.connections) == 1
    engine.dispose()
    # Afterwards: no more listening, and the caller's wakeup fd and handler are back.
    with create_engine("sqlite://").connect():
        pass
    assert len(stop.connections) == 1
    assert wakeup_fd() == before
    assert signal.getsignal(signal.SIGTERM) is not stop._handle


def test_outside_the_main_thread_signals_are_left_alone() -> None:
    seen = []

    def run() -> None:
        with stopping.StopOnSigterm() as stop:
            seen.append(stop._installed)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(10)
    assert seen == [False]

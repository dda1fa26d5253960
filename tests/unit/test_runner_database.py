"""The runner's session, without a database: the lock key and the lock's polling."""

from __future__ import annotations

import io

from migrategate.runner.database import Session, lock_key
from migrategate.runner.errors import Transient


def test_lock_key_depends_on_database_and_table_and_is_bigint() -> None:
    keys = {lock_key("a"), lock_key("b"), lock_key("a", "other_version")}
    assert len(keys) == 3
    assert all(-(2**63) <= k < 2**63 for k in keys)
    assert lock_key("a") == lock_key("a", "alembic_version")


class FakeSession(Session):
    """A Session whose lock is busy for a number of tries (pure polling logic, no database)."""

    def __init__(self, busy_tries: int) -> None:
        super().__init__(url=None, driver="psycopg")  # type: ignore[arg-type]
        self.busy_tries = busy_tries
        self.tries = 0

    def try_lock(self, key: int) -> bool:
        self.tries += 1
        return self.tries > self.busy_tries

    def holds_lock(self, key: int, check_token: bool = True) -> bool:
        return False  # a dedicated session: nobody took the lock in it before


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_lock_polls_with_backoff_until_free() -> None:
    clock, out = FakeClock(), io.StringIO()
    FakeSession(busy_tries=6).lock(1, timeout=60, out=out, clock=clock, sleep=clock.sleep)
    assert clock.sleeps == [0.05, 0.1, 0.2, 0.4, 0.8, 1.0]
    assert out.getvalue().count("waiting for the migration lock") == 1


def test_lock_wait_is_bounded() -> None:
    clock = FakeClock()
    session = FakeSession(busy_tries=10**6)
    try:
        session.lock(1, timeout=3, out=io.StringIO(), clock=clock, sleep=clock.sleep)
    except Transient as error:
        assert "timed out after 3s" in error.message and "--lock-timeout" in error.message
    else:
        raise AssertionError("expected Transient")
    assert 3.0 <= clock.now <= 3.0 + 1e-9

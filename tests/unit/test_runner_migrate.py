"""The migrate command's pure parts: the lock_timeout retry delays."""

from migrategate.runner.migrate import lock_retry_delay


def test_lock_retry_delays_double_with_jitter_and_are_capped() -> None:
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (5, 16.0), (6, 30.0), (40, 30.0)]:
        delays = [lock_retry_delay(attempt) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays), (attempt, min(delays))
        assert len(set(delays)) > 1  # jittered: runners behind one table do not retry in step

"""Capped exponential backoff with deterministic jitter."""

from migrategate.controller.backoff import JITTER, delay


def test_doubles_then_caps():
    values = [delay(n, 10, 60, seed="s") / (1 + 0) for n in range(1, 7)]
    raw = [10, 20, 40, 60, 60, 60]
    for got, want in zip(values, raw, strict=True):
        assert want * (1 - JITTER) <= got <= min(60, want * (1 + JITTER))


def test_jitter_is_stable_per_seed_and_differs_between_seeds():
    assert delay(2, 10, 300, "job-a") == delay(2, 10, 300, "job-a")
    spread = {round(delay(2, 10, 300, f"job-{i}"), 6) for i in range(20)}
    assert len(spread) > 10

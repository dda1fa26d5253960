"""kstatus conditions and status diffs."""

from migrategate.api.models import Phase
from migrategate.controller.status import Standing, conditions, diff

RUNNING = Standing(Phase.RUNNING, "JobRunning", "running", reconciling=True)
READY = Standing(Phase.SUCCEEDED, "Succeeded", "done", ready=True)
STALLED = Standing(Phase.FAILED, "MigrationFailed", "boom", stalled=True)


def by_type(conds):
    return {x["type"]: x for x in conds}


def test_each_state_sets_exactly_its_condition():
    for state, true_one in ((RUNNING, "Reconciling"), (READY, "Ready"), (STALLED, "Stalled")):
        conds = by_type(conditions(state, 4, None, "t0"))
        assert set(conds) == {"Ready", "Reconciling", "Stalled"}
        assert [k for k, v in conds.items() if v["status"] == "True"] == [true_one]
        assert all(v["observedGeneration"] == 4 for v in conds.values())
        assert conds[true_one]["reason"] == state.reason


def test_last_transition_time_is_kept_while_status_is_unchanged():
    first = conditions(RUNNING, 1, None, "t0")
    second = by_type(conditions(RUNNING, 1, first, "t1"))
    assert second["Reconciling"]["lastTransitionTime"] == "t0"
    third = by_type(conditions(READY, 1, first, "t2"))
    assert third["Ready"]["lastTransitionTime"] == "t2"
    assert third["Reconciling"]["lastTransitionTime"] == "t2"
    assert third["Stalled"]["lastTransitionTime"] == "t0"  # False before and after


def test_diff_sends_only_changes_and_nulls_removed_keys():
    old = {"phase": "Running", "jobName": "a", "message": "x"}
    new = {"phase": "Succeeded", "jobName": "a"}
    assert diff(old, new) == {"phase": "Succeeded", "message": None}
    assert diff(new, new) == {}

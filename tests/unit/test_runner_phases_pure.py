"""Expand and contract (issue 12): how the scripts split into phases and where each run goes."""

from __future__ import annotations

from pathlib import Path

import pytest
import samples
from migrategate.runner import phases, scripts
from migrategate.runner.contract import Phase, PhaseKey
from migrategate.runner.errors import BadInput
from migrategate.runner.scripts import Position

EXPAND, CONTRACT, ALL = Phase.EXPAND.value, Phase.CONTRACT.value, Phase.ALL.value


def revision(rev: str, down: str | None, labels: str | None = None, depends: str | None = None):
    branch_labels = (labels,) if labels else None
    return samples.revision_source(rev, down, branch_labels=branch_labels, depends_on=depends)


def load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, version: str, **extra: str):
    """Sample ``version`` (seed 004) plus ``extra`` revision files {name: source}; its scripts."""
    path = samples.materialize("seed004_ini_url", version, tmp_path / "app")
    for name, source in extra.items():
        (samples.versions_dir(path) / f"{name}.py").write_text(source)
    monkeypatch.chdir(path)
    return scripts.load_scripts(scripts.load_config("alembic.ini", "alembic"))


@pytest.fixture
def v2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    return load(tmp_path, monkeypatch, "ec-v2")


@pytest.fixture
def v3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    return load(tmp_path, monkeypatch, "ec-v3")


def test_layout_splits_heads_by_the_contract_label(v3) -> None:
    found = phases.layout(v3)
    assert found.has_contract_branch
    assert (found.expand_heads, found.contract_heads) == (("0005",), ("0005c",))
    assert found.contract_revisions == {"0004c", "0005c"}


def test_layout_without_a_contract_branch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    found = phases.layout(load(tmp_path, monkeypatch, "ec-v1"))
    assert not found.has_contract_branch
    assert (found.expand_heads, found.contract_heads) == (("0003",), ())


def test_another_label_is_not_the_contract_branch(v3) -> None:
    found = phases.layout(v3, "cleanup")
    assert not found.has_contract_branch and found.expand_heads == ("0005", "0005c")
    with pytest.raises(BadInput, match="multiple heads"):
        phases.resolve_goal(v3, "head", None, "cleanup")


@pytest.mark.parametrize(
    ("phase", "resolved", "target", "destination"),
    [
        (None, EXPAND, ("0005",), "0005"),
        (EXPAND, EXPAND, ("0005",), "0005"),
        (CONTRACT, CONTRACT, ("0005", "0005c"), "heads"),
        (ALL, ALL, ("0005", "0005c"), "heads"),
    ],
)
def test_goal_of_each_phase(v3, phase, resolved, target, destination) -> None:
    goal = phases.resolve_goal(v3, "head", phase)
    assert (goal.phase, goal.target, goal.destination) == (resolved, target, destination)
    assert phases.resolve_goal(v3, "heads", phase).target == target


@pytest.mark.parametrize(
    ("phase", "current", "position", "pending"),
    [
        # ec-v1 done: expand brings 0004 and 0005; contract refuses until then
        (EXPAND, ("0003",), Position.BEHIND, ["0004", "0005"]),
        (ALL, ("0003",), Position.BEHIND, ["0004", "0005", "0004c", "0005c"]),
        # ec-v2 expanded only
        (EXPAND, ("0004",), Position.BEHIND, ["0005"]),
        # ec-v2 contracted: Alembic folded 0004 into 0004c (0004c depends_on 0004)
        (EXPAND, ("0004c",), Position.BEHIND, ["0005"]),
        (CONTRACT, ("0004c",), Position.BEHIND, ["0005", "0005c"]),
        # ec-v3 expanded: the contract branch left as it was
        (EXPAND, ("0004c", "0005"), Position.AT_TARGET, []),
        (EXPAND, ("0005",), Position.AT_TARGET, []),
        (CONTRACT, ("0004c", "0005"), Position.BEHIND, ["0005c"]),
        (CONTRACT, ("0005",), Position.BEHIND, ["0004c", "0005c"]),
        # ec-v3 contracted: 0005c holds 0004c and 0005
        (EXPAND, ("0005c",), Position.AT_TARGET, []),
        (CONTRACT, ("0005c",), Position.AT_TARGET, []),
        (ALL, ("0005c",), Position.AT_TARGET, []),
        # a later image's revisions: ahead in every phase
        (EXPAND, ("0006",), Position.AHEAD, []),
        (CONTRACT, ("0005", "0006c"), Position.AHEAD, []),
    ],
)
def test_position_and_pending(v3, phase, current, position, pending) -> None:
    goal = phases.resolve_goal(v3, "head", phase)
    assert goal.position(v3, current) == position
    assert goal.pending(v3, current) == pending


@pytest.mark.parametrize("current", [(), ("0003",), ("0004",)])
def test_contract_refuses_while_expand_is_pending(v3, current) -> None:
    goal = phases.resolve_goal(v3, "head", CONTRACT)
    with pytest.raises(BadInput, match="--phase contract needs the expand phase done first"):
        goal.ensure_ready(v3, current)


def test_contract_after_expand_is_ready(v3) -> None:
    phases.resolve_goal(v3, "head", CONTRACT).ensure_ready(v3, ("0004c", "0005"))
    phases.resolve_goal(v3, "head", EXPAND).ensure_ready(v3, ())  # only contract checks


def test_no_contract_branch_is_todays_behaviour(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    v1 = load(tmp_path, monkeypatch, "ec-v1")
    for phase in (None, EXPAND, CONTRACT, ALL):
        goal = phases.resolve_goal(v1, "head", phase)
        assert not goal.phased and goal.target == ("0003",) and goal.destination == "head"
        assert goal.position(v1, ("0001",)) == scripts.compare(v1, ("0001",), ("0003",))
        assert goal.pending(v1, ("0001",)) == ["0002", "0003"]
    assert phases.resolve_goal(v1, "head").phase == ALL
    assert phases.resolve_goal(v1, "0002", EXPAND).target == ("0002",)  # any target, as today
    contract = phases.resolve_goal(v1, "head", CONTRACT)
    with pytest.raises(BadInput, match="run `migrategate migrate --phase expand`"):
        contract.ensure_ready(v1, ("0001",))
    contract.ensure_ready(v1, ("0003",))


def test_multiple_heads_outside_the_pattern_stay_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    branched = load(tmp_path, monkeypatch, "ec-v1", **{"0003b_branch": revision("0003b", "0002")})
    for phase in (None, EXPAND, ALL):
        with pytest.raises(BadInput, match=r"multiple heads \(0003, 0003b\).*alembic merge heads"):
            phases.resolve_goal(branched, "head", phase)
    assert phases.resolve_goal(branched, "heads", ALL).target == ("0003", "0003b")


def test_two_expand_heads_beside_a_contract_branch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = load(tmp_path, monkeypatch, "ec-v3", **{"0005b_branch": revision("0005b", "0004")})
    with pytest.raises(BadInput, match="expand 0005, 0005b; contract .contract. 0005c"):
        phases.resolve_goal(script, "head", EXPAND)


def test_contract_branch_must_have_its_own_base(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A contract branch that splits off the expand line instead of starting at its own base.
    offshoot = revision("0004x", "0003", labels="contract")
    expand = revision("0004", "0003")
    script = load(tmp_path, monkeypatch, "ec-v1", **{"0004x_offshoot": offshoot, "0004": expand})
    with pytest.raises(BadInput, match="contract revision 0004x has down_revision 0003"):
        phases.layout(script)


def test_a_label_on_a_straight_line_takes_everything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Alembic gives the label to the unbranched ancestors too: nothing would be expand.
    script = load(
        tmp_path, monkeypatch, "ec-v1", **{"0004_l": revision("0004", "0003", "contract")}
    )
    with pytest.raises(BadInput, match="every revision is on the 'contract' branch"):
        phases.layout(script)


def test_expand_must_not_depend_on_contract(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    needs = revision("0006", "0005", depends="0004c")
    script = load(tmp_path, monkeypatch, "ec-v3", **{"0006_needs": needs})
    with pytest.raises(BadInput, match=r"expand revisions depend on the contract branch \(0004c"):
        phases.layout(script)


def test_explicit_revision_target(v3) -> None:
    with pytest.raises(BadInput, match="--phase expand upgrades to its phase's head"):
        phases.resolve_goal(v3, "0004", EXPAND)
    goal = phases.resolve_goal(v3, "0004c")  # auto: an explicit target is all
    assert (goal.phase, goal.target, goal.destination) == (ALL, ("0004c",), "0004c")
    assert goal.position(v3, ("0003",)) == Position.BEHIND
    assert goal.pending(v3, ("0003",)) == ["0004", "0004c"]
    assert goal.position(v3, ("0004c",)) == Position.AT_TARGET


def test_describe_gives_the_result_keys(v2) -> None:
    assert phases.resolve_goal(v2, "head").describe() == {
        PhaseKey.PHASE: EXPAND,
        PhaseKey.HAS_CONTRACT_BRANCH: True,
        PhaseKey.CONTRACT_BRANCH: "contract",
        PhaseKey.EXPAND_HEADS: ["0004"],
        PhaseKey.CONTRACT_HEADS: ["0004c"],
    }

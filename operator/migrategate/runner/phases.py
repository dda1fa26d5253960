"""Expand and contract: which of the image's revisions a run applies (issue 12).

Revisions on the branch labelled ``contract`` (``--contract-branch``) form the contract phase;
every other revision is expand. It is Alembic's "multiple bases" pattern: the contract
branch starts at its own base (``down_revision = None``) and its revisions use
``depends_on`` to follow the expand revisions they need, so ``alembic upgrade heads`` by hand
runs everything in a safe order. The scripts then have exactly two heads, one per phase.

Scripts without a contract branch go through exactly the code they went through before
(``scripts.resolve_target``, ``compare``, ``pending_revisions``): ``--phase`` changes
nothing for them but refusing ``contract`` while an upgrade is pending.

With a contract branch the database is compared by what it has applied: the revisions in
the version table and all their ancestors, dependencies included. Alembic folds a revision
into the one that ``depends_on`` it (after 0004c, which depends on 0004, the version table
holds 0004c alone), so comparing the rows with the scripts' heads would not do.
Nothing here touches the database.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Optional, cast

from alembic.script import Script, ScriptDirectory
from alembic.util import to_tuple

from .contract import DEFAULT_CONTRACT_BRANCH, WHOLE_TARGETS, Phase, phase_keys
from .errors import BadInput
from .scripts import (
    Position,
    ancestry,
    compare,
    known_revisions,
    pending_revisions,
    resolve_target,
)


@dataclass(frozen=True)
class Layout:
    """How the image's revisions split into the two phases."""

    label: str  # the contract branch's label
    expand_heads: tuple[str, ...]
    contract_heads: tuple[str, ...]  # () without a contract branch
    contract_revisions: frozenset[str]  # every revision on the contract branch

    @property
    def has_contract_branch(self) -> bool:
        return bool(self.contract_revisions)


def layout(scripts: ScriptDirectory, label: str = DEFAULT_CONTRACT_BRANCH) -> Layout:
    """Split the scripts' heads by the contract branch label; BadInput if it breaks the pattern.

    Alembic gives every revision of a labelled branch the label (``Script.branch_labels``),
    from the revision that declares it up to the branch's heads.
    """
    revisions = list(scripts.walk_revisions())
    contract = frozenset(r.revision for r in revisions if label in r.branch_labels)
    heads = tuple(sorted(scripts.get_heads()))
    expand_heads = tuple(h for h in heads if h not in contract)
    contract_heads = tuple(h for h in heads if h in contract)
    found = Layout(label, expand_heads, contract_heads, contract)
    if contract:
        _check_pattern(scripts, found, revisions)
    return found


def _check_pattern(scripts: ScriptDirectory, found: Layout, revisions: list[Script]) -> None:
    """The contract branch has its own base, expand never needs it, one head each."""
    label, contract = found.label, found.contract_revisions
    fix = (
        f"start the {label!r} branch at its own base (down_revision = None,"
        f" branch_labels = ({label!r},)) and let its revisions depends_on the expand"
        " revisions they need; see docs/expand-contract.md"
    )
    if not found.expand_heads:
        raise BadInput(
            f"every revision is on the {label!r} branch (Alembic gives a branch label to a"
            f" revision's ancestors too when they do not branch): {fix}"
        )
    for script in revisions:
        if script.revision in contract:
            outside = [d for d in to_tuple(script.down_revision, default=()) if d not in contract]
            if outside:
                raise BadInput(
                    f"contract revision {script.revision} has down_revision {outside[0]}, an"
                    f" expand revision: {fix}"
                )
    needed = ancestry(scripts, found.expand_heads) & contract
    if needed:
        raise BadInput(
            f"expand revisions depend on the contract branch ({', '.join(sorted(needed))}):"
            " expand runs before the rollout and cannot need contract revisions; drop"
            " that depends_on or move the revision to the contract branch"
        )
    if len(found.expand_heads) > 1 or len(found.contract_heads) > 1:
        raise BadInput(
            f"the scripts have multiple heads: expand {', '.join(found.expand_heads)};"
            f" contract ({label}) {', '.join(found.contract_heads)}: with a contract branch"
            " there must be one head per phase; merge them with `alembic merge`"
        )


@dataclass(frozen=True)
class Goal:
    """Where one run takes the database: the phase, its target and how to judge it."""

    phase: str  # Phase value, resolved (never "auto")
    target: tuple[str, ...]  # the revisions reported as targetRevisions
    destination: str  # what Alembic upgrades to: a revision spec
    layout: Layout
    phased: bool  # True: judged by applied revisions (a contract branch, a whole target)

    def position(self, scripts: ScriptDirectory, current: Iterable[str]) -> Position:
        """Where the database stands relative to this run's goal."""
        current = tuple(current)
        if not self.phased:
            return compare(scripts, current, self.target)
        if not set(current) <= known_revisions(scripts):
            return Position.AHEAD
        have, need = ancestry(scripts, current), ancestry(scripts, self.target)
        if self.phase == Phase.EXPAND.value:
            have = have - self.layout.contract_revisions  # the contract part stays as it is
        if have == need:
            return Position.AT_TARGET
        return Position.BEHIND if have < need else Position.AHEAD

    def pending(self, scripts: ScriptDirectory, current: Iterable[str]) -> list[str]:
        """The revisions this run applies from ``current``, oldest first."""
        current = tuple(current)
        if not self.phased:
            return pending_revisions(scripts, current, self.target)
        if self.position(scripts, current) != Position.BEHIND:
            return []
        # The order Alembic itself runs them in (the steps it hands env.py).
        steps = scripts._upgrade_revs(self.destination, cast(Any, current))
        return [step.revision.revision for step in steps]

    def ensure_ready(self, scripts: ScriptDirectory, current: Iterable[str]) -> None:
        """``contract`` runs only after ``expand``: BadInput while expand revisions are pending."""
        if self.phase != Phase.CONTRACT.value:
            return
        expand = expand_goal(self.layout, self.target if not self.phased else None)
        if expand.position(scripts, current) == Position.BEHIND:
            missing = expand.pending(scripts, current)
            raise BadInput(
                f"--phase contract needs the expand phase done first, but"
                f" {', '.join(missing) or 'expand revisions'} are pending: run"
                " `migrategate migrate --phase expand`, roll out, then the contract phase"
            )

    def describe(self) -> dict[str, Any]:
        """The result keys (contract.PhaseKey) that say what the run's phase was."""
        found = self.layout
        return phase_keys(
            self.phase,
            found.has_contract_branch,
            found.label,
            found.expand_heads,
            found.contract_heads,
        )


def expand_goal(found: Layout, target: Optional[tuple[str, ...]] = None) -> Goal:
    """The expand phase's goal (``target``: the resolved target, when the scripts have none)."""
    if not found.has_contract_branch:
        return Goal(Phase.EXPAND.value, tuple(target or ()), "", found, phased=False)
    (head,) = found.expand_heads
    return Goal(Phase.EXPAND.value, found.expand_heads, head, found, phased=True)


def resolve_goal(
    scripts: ScriptDirectory,
    target: str,
    phase: Optional[str] = None,
    label: str = DEFAULT_CONTRACT_BRANCH,
) -> Goal:
    """This run's goal from the target (head, heads or a revision) and ``--phase``.

    ``phase`` None (auto) is expand when the scripts have a contract branch and the target is
    head or heads, otherwise all. BadInput for multiple heads outside the pattern, an unknown
    target, or a phase with an explicit revision target on scripts with a contract branch.
    """
    found = layout(scripts, label)
    whole = target in WHOLE_TARGETS
    if phase is None:
        phase = Phase.EXPAND.value if found.has_contract_branch and whole else Phase.ALL.value
    if phase not in {p.value for p in Phase}:
        raise BadInput(f"unknown phase {phase!r}: pass expand, contract or all")
    if not found.has_contract_branch:
        # Today's behaviour, whatever the phase: expand is everything, contract nothing more.
        resolved = resolve_target(scripts, target)
        return Goal(phase, resolved, target, found, phased=False)
    if not whole:
        if phase != Phase.ALL.value:
            raise BadInput(
                f"--phase {phase} upgrades to its phase's head, not to --target {target}:"
                " pass --target head, or --phase all to upgrade to that revision"
            )
        return Goal(phase, resolve_target(scripts, target), target, found, phased=True)
    if phase == Phase.EXPAND.value:
        return expand_goal(found)
    everything = tuple(sorted(found.expand_heads + found.contract_heads))
    return Goal(phase, everything, "heads", found, phased=True)

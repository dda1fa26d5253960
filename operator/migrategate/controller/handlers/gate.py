"""The rollout gate's kopf adapters: two indexes and two event handlers.

Two kopf indexes join pods and DatabaseMigrations without polling or API reads:
- `gated_pods`: (namespace, migration name) -> facts of each pod that carries the gate;
- `migration_states`: (namespace, name) -> whether it exists and its migratedImage.

A gated pod's event looks up its migration; a migration's event looks up its
gated pods. kopf runs no handler before its indexes are filled from the initial
listing, so a restarted operator sees every gated pod and every migratedImage.
What to do with them is gate_keeper.GateKeeper's (`memo.gate`, set at start-up).
"""

from __future__ import annotations

from typing import Any

import kopf

from migrategate.api import constants as c
from migrategate.controller import gate_decision
from migrategate.controller.gate_decision import GatedPod, MigrationState

IndexKey = tuple[str, str]  # (namespace, DatabaseMigration name)


def index_gated_pod(body: kopf.Body, **_: Any) -> dict[IndexKey, GatedPod]:
    pod = gate_decision.gated_pod(body)
    return {(pod.namespace, pod.migration): pod} if pod.migration else {}


def index_migration(
    body: kopf.Body, name: str, namespace: str | None, **_: Any
) -> dict[IndexKey, MigrationState]:
    return {(namespace or "", name): gate_decision.migration_state(body)}


def lookup_migration(
    index: kopf.Index[IndexKey, MigrationState], namespace: str, name: str | None
) -> MigrationState:
    store = index.get((namespace, name)) if name else None
    return next(iter(store), gate_decision.MISSING) if store else gate_decision.MISSING


async def on_gated_pod(
    event: kopf.RawEvent,
    body: kopf.Body,
    memo: kopf.Memo,
    migration_states: kopf.Index[IndexKey, MigrationState],
    **_: Any,
) -> None:
    await memo.gate.pod_event(
        gate_decision.gated_pod(body),
        deleted=event.get("type") == "DELETED",
        lookup=lambda pod: lookup_migration(migration_states, pod.namespace, pod.migration),
    )


async def on_migration_event(
    event: kopf.RawEvent,
    body: kopf.Body,
    name: str,
    namespace: str | None,
    memo: kopf.Memo,
    gated_pods: kopf.Index[IndexKey, GatedPod],
    **_: Any,
) -> None:
    if event.get("type") == "DELETED" or namespace is None:
        return
    migration = gate_decision.migration_state(body)
    await memo.gate.migration_event(
        namespace, name, migration, gated_pods.get((namespace, name), ())
    )


def _gated(spec: kopf.Spec, **_: Any) -> bool:
    return gate_decision.has_gate(spec)


def _gated_or_held(
    spec: kopf.Spec, name: str | None, namespace: str | None, memo: kopf.Memo, **_: Any
) -> bool:
    # A tracked pod's first event without the gate (or its deletion) updates the keeper.
    return gate_decision.has_gate(spec) or memo.gate.tracks((namespace or "", name or ""))


def register(registry: kopf.OperatorRegistry) -> None:
    kopf.index("", "v1", "pods", when=_gated, registry=registry, id="gated_pods")(index_gated_pod)
    kopf.index(c.GROUP, c.VERSION, c.PLURAL, registry=registry, id="migration_states")(
        index_migration
    )
    kopf.on.event("", "v1", "pods", when=_gated_or_held, registry=registry, id="gated-pod")(
        on_gated_pod  # type: ignore[arg-type]  # kopf passes the index by name, in **kwargs
    )
    kopf.on.event(c.GROUP, c.VERSION, c.PLURAL, registry=registry, id="gate-migration")(
        on_migration_event  # type: ignore[arg-type]  # likewise
    )

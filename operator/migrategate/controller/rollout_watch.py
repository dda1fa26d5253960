"""Which DatabaseMigrations wait for a rollout, and which pod or Deployment events wake them.

Plain state, no kopf and no I/O. The reconciler registers a migration before it reads the
rollout's facts (so no event after that read is missed) and forgets it once it no longer
waits; handlers/rollout.py asks `woken_by_pod` / `woken_by_deployment` on each watch event
and nudges those migrations. Pods and Deployments are never polled.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from migrategate.api import constants as c

Key = tuple[str, str]  # (namespace, DatabaseMigration name)


@dataclass
class RolloutWatch:
    """Migrations waiting for a rollout -> the Deployments they watch (empty: annotated pods)."""

    waiting: dict[Key, tuple[str, ...]] = field(default_factory=dict)

    def watch(self, key: Key, deployments: tuple[str, ...]) -> None:
        self.waiting[key] = deployments

    def forget(self, key: Key) -> None:
        self.waiting.pop(key, None)

    def woken_by_pod(self, namespace: str, meta: Mapping[str, Any]) -> list[Key]:
        """The waiting migrations a pod's change may finish.

        A listed Deployment's pods may lack our annotation (the gate is optional), so any
        application pod of the namespace wakes those; the migration Jobs' own pods do not.
        Without Deployments, only pods whose annotation names the migration.
        """
        if (meta.get("labels") or {}).get(c.LABEL_MANAGED_BY) == c.MANAGED_BY:
            return []
        named = (meta.get("annotations") or {}).get(c.ANNOTATION_MIGRATION)
        return [
            key
            for key, deployments in self.waiting.items()
            if key[0] == namespace and (deployments or key[1] == named)
        ]

    def woken_by_deployment(self, namespace: str, name: str) -> list[Key]:
        return [
            key
            for key, deployments in self.waiting.items()
            if key[0] == namespace and name in deployments
        ]

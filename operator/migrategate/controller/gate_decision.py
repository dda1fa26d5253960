"""The rollout gate's decision: pod and DatabaseMigration facts in, release or hold out.

Pure: no I/O, no kopf. The handlers (handlers/gate.py) gather the facts from
kopf's indexes and act on the decision.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from migrategate.api import constants as c


class Reason(enum.StrEnum):
    RELEASED = "ImageMigrated"
    NOT_GATED = "NotGated"  # our gate is not (or no longer) on the pod
    NO_ANNOTATION = "NoMigrationAnnotation"
    MIGRATION_NOT_FOUND = "MigrationNotFound"
    NOT_MIGRATED = "WaitingForMigration"


@dataclass(frozen=True)
class GatedPod:
    """What the gate needs to know about one pod."""

    namespace: str
    name: str
    uid: str
    migration: str | None  # the annotation's value: a DatabaseMigration name
    images: frozenset[str]  # every container's and init container's image
    gated: bool  # our entry is in spec.schedulingGates
    created: datetime | None

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)


@dataclass(frozen=True)
class MigrationState:
    """A DatabaseMigration as the gate sees it; `migrated_image` is None until one succeeds."""

    exists: bool
    migrated_image: str | None = None


MISSING = MigrationState(exists=False)


@dataclass(frozen=True)
class Decision:
    release: bool
    reason: Reason
    message: str


def has_gate(spec: Mapping[str, Any]) -> bool:
    """Whether our entry is among the pod's scheduling gates."""
    return any(g.get("name") == c.SCHEDULING_GATE for g in spec.get("schedulingGates") or [])


def container_images(spec: Mapping[str, Any]) -> frozenset[str]:
    """Every container's and init container's image of a pod spec, as written."""
    containers = [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
    return frozenset(str(x["image"]) for x in containers if x.get("image"))


def gated_pod(body: Mapping[str, Any]) -> GatedPod:
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    return GatedPod(
        namespace=str(meta.get("namespace") or ""),
        name=str(meta.get("name") or ""),
        uid=str(meta.get("uid") or ""),
        migration=(meta.get("annotations") or {}).get(c.ANNOTATION_MIGRATION) or None,
        images=container_images(spec),
        gated=has_gate(spec),
        created=_parse_time(meta.get("creationTimestamp")),
    )


def migration_state(body: Mapping[str, Any]) -> MigrationState:
    status = body.get("status") or {}
    return MigrationState(exists=True, migrated_image=status.get("migratedImage") or None)


def decide(pod: GatedPod, migration: MigrationState) -> Decision:
    """Release a gated pod once its DatabaseMigration has migrated one of the pod's images.

    Images compare as written: the chart renders the same string into the pod
    template and the DatabaseMigration. A pod of an older, already migrated image
    is released while a newer migration runs, because migratedImage only moves
    on success.
    """
    if not pod.gated:
        return Decision(False, Reason.NOT_GATED, "the pod does not carry the gate")
    if not pod.migration:
        return Decision(
            False,
            Reason.NO_ANNOTATION,
            f"the pod carries the {c.SCHEDULING_GATE} gate but no "
            f"{c.ANNOTATION_MIGRATION} annotation naming its DatabaseMigration",
        )
    if not migration.exists:
        return Decision(
            False,
            Reason.MIGRATION_NOT_FOUND,
            f"DatabaseMigration {pod.namespace}/{pod.migration} not found; "
            "the pod stays gated until it exists and has migrated this pod's image",
        )
    image = migration.migrated_image
    if image is None or image not in pod.images:
        return Decision(
            False,
            Reason.NOT_MIGRATED,
            f"DatabaseMigration {pod.migration} has migrated {image or 'no image yet'}, "
            f"not {', '.join(sorted(pod.images)) or 'this pod'}",
        )
    return Decision(True, Reason.RELEASED, f"{image} migrated by {pod.migration}")


def wait_seconds(pod: GatedPod, now: datetime) -> float | None:
    """How long the pod has waited since its creation (None without a timestamp)."""
    if pod.created is None:
        return None
    return max((now - pod.created).total_seconds(), 0.0)


def _parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None

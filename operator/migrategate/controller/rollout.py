"""Has the rollout of a migrated image finished? Deployment and pod facts in, progress out. No I/O.

Between the expand and the contract phase (docs/expand-contract.md) the operator waits
until no pod of an older image can still use what the contract phase drops:
- every Deployment in spec.gate.deployments has observed its current generation, has all
  its replicas updated and available, counts no replica of an older ReplicaSet, and has
  no pod left whose containers run another image;
- with no Deployment listed, no pod carrying this DatabaseMigration's
  migrategate.io/migration annotation runs another image.

A pod counts until it is gone from the API, terminating ones included: a pod in its
grace period may still be finishing requests against the old columns, and one whose
containers have stopped is gone a moment later (the kubelet sets a deleted pod's final
phase before the API removes it). Pods that ended and stay (phase Succeeded or Failed
without a deletion under way, e.g. evicted) hold no connection and do not count.
migration_reconciler.py reads the facts; migration_decision.py acts on the progress.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from migrategate.api import constants as c
from migrategate.controller.gate_decision import container_images

ENDED_POD_PHASES = ("Succeeded", "Failed")
MAX_NAMED_PODS = 3  # pods named in a waiting message; the count stays exact


@dataclass(frozen=True)
class PodImages:
    """What the rollout check needs to know about one application pod."""

    name: str
    images: frozenset[str]  # every container's and init container's image
    migration: str | None  # its migrategate.io/migration annotation
    ended: bool  # phase Succeeded or Failed
    deleting: bool = False  # deletionTimestamp set: it counts until the API removes it

    @property
    def counts(self) -> bool:
        """Whether it may still run old code: any pod but one that ended and stays."""
        return self.deleting or not self.ended


@dataclass(frozen=True)
class DeploymentFacts:
    """One Deployment of spec.gate.deployments and the pods its selector matches."""

    name: str
    found: bool
    generation: int = 0
    observed_generation: int = 0
    replicas: int = 0  # spec.replicas: what the rollout ends with
    updated: int = 0  # status.updatedReplicas: pods of the current template
    available: int = 0  # status.availableReplicas
    total: int = 0  # status.replicas: pods of every ReplicaSet, old ones included
    pods: tuple[PodImages, ...] = ()


@dataclass(frozen=True)
class RolloutFacts:
    """Everything the check reads for one DatabaseMigration."""

    deployments: tuple[DeploymentFacts, ...] = ()  # spec.gate.deployments, in its order
    # Read only when no Deployment is listed: the namespace's pods (those naming it count).
    annotated_pods: tuple[PodImages, ...] = ()


@dataclass(frozen=True)
class Progress:
    done: bool
    message: str


def rollout_progress(image: str, migration: str, facts: RolloutFacts) -> Progress:
    """Whether the rollout of `image` is over, and if not, what it still waits for."""
    if facts.deployments:
        waiting = [w for w in (_deployment_wait(image, d) for d in facts.deployments) if w]
        if waiting:
            return Progress(False, "waiting for rollout of " + "; ".join(waiting))
        names = ", ".join(f"deployment/{d.name}" for d in facts.deployments)
        return Progress(True, f"rollout of {names} finished: every pod runs {image}")
    mine = [p for p in facts.annotated_pods if p.migration == migration]
    old = _other_image(image, mine)
    annotation = f"{c.ANNOTATION_MIGRATION}={migration}"
    if old:
        left = f"{_count(old, image)} among the pods carrying {annotation}"
        return Progress(False, f"waiting for rollout: {left}")
    finished = f"no pod carrying {annotation} runs another image than {image}"
    return Progress(True, f"rollout finished: {finished}")


def _deployment_wait(image: str, d: DeploymentFacts) -> str | None:
    """What one Deployment still lacks ("deployment/shop: 3/5 updated, ..."); None when done."""
    if not d.found:
        return f"deployment/{d.name}: not found"
    if d.observed_generation < d.generation:
        return f"deployment/{d.name}: generation {d.generation} not yet observed"
    lacks = []
    if d.updated < d.replicas:
        lacks.append(f"{d.updated}/{d.replicas} updated")
    if d.available < d.replicas:
        lacks.append(f"{d.available}/{d.replicas} available")
    if d.total > d.updated:
        lacks.append(f"{d.total - d.updated} old replica(s)")
    old = _other_image(image, d.pods)
    if old:
        lacks.append(_count(old, image))
    return f"deployment/{d.name}: " + ", ".join(lacks) if lacks else None


def _other_image(image: str, pods: Sequence[PodImages]) -> list[str]:
    return sorted(p.name for p in pods if p.counts and image not in p.images)


def _count(names: Sequence[str], image: str) -> str:
    shown = ", ".join(names[:MAX_NAMED_PODS]) + (", ..." if len(names) > MAX_NAMED_PODS else "")
    return f"{len(names)} pod(s) of another image than {image} left ({shown})"


def pod_images(body: Mapping[str, Any]) -> PodImages:
    meta = body.get("metadata") or {}
    return PodImages(
        name=str(meta.get("name") or ""),
        images=container_images(body.get("spec") or {}),
        migration=(meta.get("annotations") or {}).get(c.ANNOTATION_MIGRATION) or None,
        ended=(body.get("status") or {}).get("phase") in ENDED_POD_PHASES,
        deleting=bool(meta.get("deletionTimestamp")),
    )


def deployment_facts(
    name: str, body: Mapping[str, Any] | None, pods: Sequence[Mapping[str, Any]]
) -> DeploymentFacts:
    """Facts of a Deployment read from the API (None: not found) and of its selector's pods."""
    if body is None:
        return DeploymentFacts(name=name, found=False)
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    replicas = spec.get("replicas")
    return DeploymentFacts(
        name=name,
        found=True,
        generation=int(meta.get("generation") or 0),
        observed_generation=int(status.get("observedGeneration") or 0),
        replicas=1 if replicas is None else int(replicas),  # the API's default
        updated=int(status.get("updatedReplicas") or 0),
        available=int(status.get("availableReplicas") or 0),
        total=int(status.get("replicas") or 0),
        pods=tuple(pod_images(p) for p in pods),
    )


def label_selector(selector: Mapping[str, Any] | None) -> str:
    """A Deployment's spec.selector as a list call's labelSelector string."""
    sel = selector or {}
    parts = [f"{k}={v}" for k, v in sorted((sel.get("matchLabels") or {}).items())]
    for expr in sel.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In":
            parts.append(f"{key} in ({','.join(values)})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(values)})")
        elif op == "Exists":
            parts.append(str(key))
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts)

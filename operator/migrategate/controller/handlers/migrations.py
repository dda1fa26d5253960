"""DatabaseMigration create, resume and change (spec, labels, the rerun annotation)."""

from __future__ import annotations

from typing import Any

import kopf

from migrategate.api import constants as c


async def on_migration(name: str, namespace: str | None, memo: kopf.Memo, **_: Any) -> None:
    if namespace:  # always, for a namespaced resource
        await memo.reconciler.reconcile(namespace, name)


def register(registry: kopf.OperatorRegistry) -> None:
    for cause, decorator in (
        ("resume", kopf.on.resume),
        ("create", kopf.on.create),
        ("update", kopf.on.update),
    ):
        register_one = decorator(
            c.GROUP, c.VERSION, c.PLURAL, registry=registry, id=f"reconcile-on-{cause}"
        )
        register_one(on_migration)

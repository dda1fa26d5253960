"""kopf handler registration: one module per concern, each with `register(registry)`.

Handlers are adapters: they unpack kopf's arguments and call one coroutine.
"""

from __future__ import annotations

import kopf

from migrategate.controller.handlers import children, gate, lifecycle, migrations, rollout

MODULES = (lifecycle, migrations, children, gate, rollout)


def build_registry() -> kopf.OperatorRegistry:
    """A fresh registry holding every handler of the operator."""
    registry = kopf.OperatorRegistry()
    # A plain registry has no login handler: kopf's own for kubernetes_asyncio (in-cluster, else
    # the kubeconfig), the client the operator already uses.
    kopf.on.login(registry=registry, id="login")(kopf.login_via_async_client)
    for module in MODULES:
        module.register(registry)
    return registry

"""What the operator's cluster tests share (test_operator.py, test_job_pods.py, and
chartrelease.py's releases): ``Cluster``, kubectl helpers over one namespace, the manifests
of a DatabaseMigration and of a gated pod (the benchmarks' too), and small assertions about
DatabaseMigrations and the database. Their fixtures (``crd``, ``runner_image``,
``app_image``, ``operator``, ``cluster``) are in conftest.py.
"""

from __future__ import annotations

import json
from typing import Any

import pgserver
from kubeharness import manifests as m
from kubeharness.wait import eventually
from migrategate.api import constants as c


def migration_manifest(name: str, image: str, secret: str, **spec: Any) -> dict[str, Any]:
    """A DatabaseMigration of ``image`` whose database URL is the key ``url`` of the
    Secret ``secret``; ``spec`` adds or replaces fields of its spec."""
    url = {"secretKeyRef": {"name": secret, "key": "url"}}
    return m.resource(
        c.API_VERSION, c.KIND, name, spec={"image": image, "databaseURL": url, **spec}
    )


def gated_pod(name: str, image: str, migration: str, *other_gates: str) -> dict[str, Any]:
    """A sleeping pod that names ``migration`` and waits at its scheduling gate (and at
    ``other_gates``), as the example chart's pods do."""
    gates = [{"name": gate} for gate in (c.SCHEDULING_GATE, *other_gates)]
    app = m.container("app", "exec sleep infinity", image=image)
    pod = m.pod(name, app, restartPolicy="Always", schedulingGates=gates)
    pod["metadata"]["annotations"] = {c.ANNOTATION_MIGRATION: migration}
    return pod


class Cluster:
    """Small helpers over kubectl for one namespace."""

    def __init__(self, cp, namespace: str) -> None:
        self.cp = cp
        self.ns = namespace

    def kubectl(self, *args: str, **kw) -> str:
        return self.cp.kubectl(*args, "-n", self.ns, **kw)

    def apply(self, *objects: dict[str, Any]) -> None:
        items = {"apiVersion": "v1", "kind": "List", "items": list(objects)}
        self.kubectl("apply", "-f", "-", input=json.dumps(items))

    def secret(self, name: str, url: str, key: str = "url") -> None:
        self.apply(m.secret(name, **{key: url}))

    def new_database(self, pg: pgserver.PgServer, secret: str = "db") -> str:
        """A fresh database whose URL is the key ``url`` of the Secret ``secret``."""
        db = pg.create_database()
        self.secret(secret, pg.url(db))
        return db

    def migration(self, name: str, image: str, secret: str, **spec: Any) -> None:
        self.apply(migration_manifest(name, image, secret, **spec))

    def get(self, *what: str) -> dict[str, Any]:
        return json.loads(self.kubectl("get", *what, "-o", "json"))

    def status(self, name: str) -> dict[str, Any]:
        return self.get("dbm", name).get("status") or {}

    def jobs(self, name: str) -> list[dict[str, Any]]:
        return self.get("jobs", "-l", f"migrategate.io/migration={name}")["items"]

    def pods(self, name: str) -> list[dict[str, Any]]:
        return self.get("pods", "-l", f"migrategate.io/migration={name}")["items"]

    def wait_ready(self, name: str, timeout: int = 120) -> dict[str, Any]:
        """Ready=True (polled, so a failure shows the status), then `kubectl wait` agrees."""
        self.wait_condition(name, "Ready", timeout)
        self.kubectl("wait", "--for=condition=Ready", f"dbm/{name}", "--timeout=10s")
        return self.status(name)

    def wait_condition(self, name: str, kind: str, timeout: float = 120) -> dict[str, Any]:
        def check() -> dict[str, Any]:
            st = self.status(name)
            conds = {c["type"]: c for c in st.get("conditions") or []}
            assert conds.get(kind, {}).get("status") == "True", st
            return st

        return eventually(check, timeout=timeout, interval=0.2)


def db_heads(pg: pgserver.PgServer, db: str) -> list[str]:
    return sorted(row[0] for row in pg.execute("SELECT version_num FROM alembic_version", db))


def assert_no_password(text: str) -> None:
    for secret in (pgserver.APP_PASSWORD, pgserver.SPECIAL_PASSWORD):
        assert secret not in text


def assert_phase(cluster: Cluster, name: str, phase: str, generation: int) -> None:
    st = cluster.status(name)
    assert st.get("observedGeneration") == generation and st.get("phase") == phase, st

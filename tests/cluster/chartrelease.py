"""Releases of the example chart (charts/examples/app) on the local cluster, rendered by the
built `helm template`: one Deployment and its DatabaseMigration each. test_gate and
test_expand_contract build on it; what only one of them asks of a release stays there."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gatewatch
import migrationkit
import operatorkit
import pgserver
from migrationkit import REPO

CHART = REPO / "charts" / "examples" / "app"
INSTANCE_LABEL = "app.kubernetes.io/instance"


class Stage(operatorkit.Cluster):
    """One namespace with its operator running, the PostgreSQL server and the built images."""

    def __init__(
        self, cp: Any, namespace: str, pg: pgserver.PgServer, tmp: Path, images: dict[str, str]
    ) -> None:
        super().__init__(cp, namespace)
        self.pg = pg
        self.tmp = tmp
        self.images = images  # sample version (and "runner") -> image name

    def database(self, release: str) -> str:
        """A fresh database whose URL is the key ``url`` of the Secret ``<release>-db``."""
        return self.new_database(self.pg, f"{release}-db")

    def recorder(self) -> gatewatch.Recorder:
        return gatewatch.Recorder(self.cp.server, self.cp.workdir / "pki", self.ns)


@dataclass
class Release:
    """One release: its Deployment and DatabaseMigration are both named ``<release>-app``."""

    stage: Stage
    release: str
    db: str

    @property
    def name(self) -> str:
        return f"{self.release}-app"

    def render(self, image: str, values: dict[str, Any], label: str) -> str:
        """`helm template` with ``image`` and ``values``; the database URL's Secret is set here.
        ``label`` names the values file."""
        repository, tag = image.rsplit(":", 1)
        values = {
            "image": {"repository": repository, "tag": tag},
            "databaseURL": {"secretName": f"{self.release}-db", "secretKey": "url"},
            **values,
        }
        values_file = self.stage.tmp / f"{self.release}-{label}-values.json"
        values_file.write_text(json.dumps(values))
        args = ("template", self.release, str(CHART), "-n", self.stage.ns, "-f", str(values_file))
        return migrationkit.helm(self.stage.cp, *args)

    def install(self, image: str, values: dict[str, Any], label: str) -> None:
        """What render() gives, the DatabaseMigration and the Deployment, in one apply."""
        manifest = self.render(image, values, label)
        assert "kind: DatabaseMigration" in manifest and "kind: Deployment" in manifest
        self.stage.kubectl("apply", "-f", "-", input=manifest)

    def status(self) -> dict[str, Any]:
        return self.stage.status(self.name)

    def wait_condition(self, kind: str, timeout: float = 120) -> dict[str, Any]:
        return self.stage.wait_condition(self.name, kind, timeout)

    def pods(self) -> list[dict[str, Any]]:
        return list(self.stage.get("pods", "-l", f"{INSTANCE_LABEL}={self.release}")["items"])

    def live_pods(self) -> list[dict[str, Any]]:
        """The pods not being deleted."""
        return [p for p in self.pods() if not p["metadata"].get("deletionTimestamp")]

    def jobs(self) -> list[dict[str, Any]]:
        return self.stage.jobs(self.name)

    def job_names(self) -> list[str]:
        return sorted(j["metadata"]["name"] for j in self.jobs())

    def heads(self) -> list[str]:
        return operatorkit.db_heads(self.stage.pg, self.db)


def release_of(pod: dict[str, Any]) -> str | None:
    return (pod["metadata"].get("labels") or {}).get(INSTANCE_LABEL)

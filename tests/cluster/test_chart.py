"""The Helm charts, rendered by the real `helm` built with the control plane.

The operator chart is linted and rendered; then `helm install` runs the operator
image (built from image/Dockerfile) as a pod on the real node, with in-cluster
credentials of the chart's own ServiceAccount: a completed migration proves the
chart's RBAC is enough, and a refused Secret read proves it is not more.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pgserver
import pytest
import samples
import yaml
from kubeharness import manifests as m
from kubeharness.wait import eventually
from migrategate.api import crd as crd_module
from migrategate.runner import contract
from migrationkit import OPERATOR_CHART, REPO, helm, install_operator, operator_pods

APP_CHART = REPO / "charts" / "examples" / "app"


def render(
    control_plane, chart: Path, *values: str, namespace: str = "mg", crds: bool = False
) -> list[dict[str, Any]]:
    sets = [arg for value in values for arg in ("--set", value)]
    flags = ["--include-crds"] if crds else []
    out = helm(
        control_plane, "template", "rel", str(chart), "--namespace", namespace, *flags, *sets
    )
    return [doc for doc in yaml.safe_load_all(out) if doc]


def apply_like_helm(control_plane, docs: list[dict[str, Any]]) -> None:
    """CRDs first, established, then the rest: the order `helm install` uses."""
    crds = of_kind(docs, "CustomResourceDefinition")
    rest = [d for d in docs if d["kind"] != "CustomResourceDefinition"]
    for group in (crds, rest):
        control_plane.kubectl(
            "apply", "-f", "-", input="\n---\n".join(json.dumps(d) for d in group)
        )
        for crd in of_kind(group, "CustomResourceDefinition"):
            name = crd["metadata"]["name"]
            control_plane.kubectl(
                "wait", "--for=condition=Established", f"crd/{name}", "--timeout=30s"
            )


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def rule_set(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """Rules flattened to (group, resource, verb) triples, so layout differences don't count."""
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


@pytest.mark.parametrize(
    "values",
    [(), ("watchNamespaces={a,b}", "replicas=2", "metrics.serviceMonitor.enabled=true")],
    ids=["defaults", "namespaced-peering-servicemonitor"],
)
def test_helm_lint_is_clean(control_plane, values: tuple[str, ...]) -> None:
    sets = [arg for value in values for arg in ("--set", value)]
    for chart in (OPERATOR_CHART, APP_CHART):
        out = helm(
            control_plane, "lint", "--strict", str(chart), *sets if chart == OPERATOR_CHART else []
        )
        assert "0 chart(s) failed" in out


def test_values_schema_rejects_a_typo(control_plane) -> None:
    done = subprocess.run(
        ["helm", "template", "rel", str(OPERATOR_CHART), "--set", "replica=2"],
        env=control_plane.env,
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0
    assert "replica" in done.stderr


def test_chart_rbac_is_deploy_rbac_and_never_touches_secrets(control_plane) -> None:
    deploy = [d for d in yaml.safe_load_all((REPO / "deploy/rbac.yaml").read_text()) if d]
    expected = rule_set([r for d in of_kind(deploy, "ClusterRole") for r in d["rules"]])
    docs = render(control_plane, OPERATOR_CHART, "replicas=2")
    (cluster_role,) = of_kind(docs, "ClusterRole")
    assert rule_set(cluster_role["rules"]) == expected

    namespaced = render(control_plane, OPERATOR_CHART, "watchNamespaces={a,b}")
    roles = of_kind(namespaced, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["a", "b"]
    everything = [r for d in of_kind(namespaced, "ClusterRole") + roles for r in d["rules"]]
    assert rule_set(everything) <= expected
    assert not any(resource == "secrets" for _, resource, _ in rule_set(everything) | expected)


def test_chart_crd_is_the_generated_crd(control_plane) -> None:
    (rendered,) = of_kind(render(control_plane, OPERATOR_CHART), "CustomResourceDefinition")
    assert rendered["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    generated = yaml.safe_load(crd_module.render())
    assert rendered["spec"] == generated["spec"]
    assert render(control_plane, OPERATOR_CHART, "crds.create=false") == [
        d for d in render(control_plane, OPERATOR_CHART) if d["kind"] != "CustomResourceDefinition"
    ]


def test_name_overrides_rename_every_object_and_the_name_label(control_plane) -> None:
    default = render(control_plane, OPERATOR_CHART)
    named = render(control_plane, OPERATOR_CHART, "nameOverride=mg")
    full = render(control_plane, OPERATOR_CHART, "fullnameOverride=ops", "replicas=2")
    (deployment,) = of_kind(default, "Deployment")
    assert deployment["metadata"]["name"] == "rel-migrategate"
    (deployment,) = of_kind(named, "Deployment")
    assert deployment["metadata"]["name"] == "rel-mg"
    assert deployment["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] == "mg"
    ours = [d for d in full if d["kind"] != "CustomResourceDefinition"]
    names = {d["kind"]: d["metadata"]["name"] for d in ours}
    assert names == {
        "ServiceAccount": "ops",
        "ClusterRole": "ops",
        "ClusterRoleBinding": "ops",
        "Deployment": "ops",
        "Service": "ops-metrics",
        "ClusterKopfPeering": "ops",
    }
    (deployment,) = of_kind(full, "Deployment")
    env = {
        e["name"]: e.get("value")
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["MIGRATEGATE_PEERING"] == "ops"
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "ops"


def test_operator_pods_follow_the_restricted_profile(control_plane) -> None:
    (deployment,) = of_kind(render(control_plane, OPERATOR_CHART), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}


def test_example_app_gates_its_pods_or_waits_with_the_runner(control_plane) -> None:
    gated = render(control_plane, APP_CHART)
    (deployment,) = of_kind(gated, "Deployment")
    (migration,) = of_kind(gated, "DatabaseMigration")
    template = deployment["spec"]["template"]
    assert template["spec"]["schedulingGates"] == [{"name": "migrategate.io/migration"}]
    assert (
        template["metadata"]["annotations"]["migrategate.io/migration"]
        == migration["metadata"]["name"]
    )
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert migration["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"] == "-1"
    assert deployment["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"] == "0"

    waiting = render(control_plane, APP_CHART, "gate.mode=initContainer", "migration.enabled=false")
    (deployment,) = of_kind(waiting, "Deployment")
    assert not of_kind(waiting, "DatabaseMigration")
    install, wait = deployment["spec"]["template"]["spec"]["initContainers"]
    assert tuple(install["command"]) == contract.INSTALL_COMMAND
    assert wait["command"][:3] == ["python", contract.INJECTED_ENTRYPOINT, "wait"]
    assert "schedulingGates" not in deployment["spec"]["template"]["spec"]


# ----------------------------------------------------------------------------- installed


def pod_log(cp, namespace: str, pod: str) -> str:
    return cp.kubectl("logs", "-n", namespace, pod, check=False)


def migration(name: str, namespace: str, image: str) -> dict[str, Any]:
    return {
        "apiVersion": "migrategate.io/v1alpha1",
        "kind": "DatabaseMigration",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"image": image, "databaseURL": {"secretKeyRef": {"name": "db", "key": "url"}}},
    }


@pytest.fixture
def app_namespace(control_plane, namespace, pg) -> str:
    """A second restricted namespace with a database Secret: where the migrations live."""
    name = f"{namespace[:50]}-app"
    control_plane.kubectl("create", "namespace", name)
    control_plane.kubectl("label", "namespace", name, m.RESTRICTED_LABEL)
    db = pg.create_database()
    secret = f"--from-literal=url={pg.url(db)}"
    eventually(lambda: control_plane.kubectl("get", "sa", "default", "-n", name), timeout=30)
    control_plane.kubectl("create", "secret", "generic", "db", "-n", name, secret)
    yield name
    control_plane.kubectl("delete", "namespace", name, "--wait=false", check=False)


def database_secret(cp, namespace: str, pg) -> None:
    """The Secret ``db`` (key ``url``) of a fresh database, in ``namespace``."""
    url = pg.url(pg.create_database())
    cp.kubectl("create", "secret", "generic", "db", "-n", namespace, f"--from-literal=url={url}")


@pytest.fixture
def uninstall(control_plane, namespace):
    """helm uninstall afterwards: a cluster-wide operator must not outlive its test."""
    yield
    helm(control_plane, "uninstall", "rel", "-n", namespace, "--wait", "--timeout=60s", check=False)


def test_helm_installed_operator_migrates_cluster_wide_and_cannot_read_secrets(
    control_plane, namespace, app_namespace, node_images, pg, uninstall
) -> None:
    cp = control_plane
    install_operator(cp, namespace, node_images.runner())
    (pod,) = operator_pods(cp, namespace)
    assert pod["spec"]["serviceAccountName"] == "rel-migrategate"
    sa = f"system:serviceaccount:{namespace}:rel-migrategate"
    for verb in ("get", "list", "watch"):
        can = cp.kubectl(
            "auth", "can-i", verb, "secrets", "-n", app_namespace, "--as", sa, check=False
        )
        assert can.strip() == "no"

    image = node_images.app("seed004_ini_url", "v1")
    cp.kubectl("apply", "-f", "-", input=json.dumps(migration("shop", app_namespace, image)))
    cp.kubectl("wait", "--for=condition=Ready", "dbm/shop", "-n", app_namespace, "--timeout=120s")
    status = json.loads(cp.kubectl("get", "dbm", "shop", "-n", app_namespace, "-o", "json"))[
        "status"
    ]
    assert status["currentRevision"] == [samples.head_of("v1")]
    log = pod_log(cp, namespace, pod["metadata"]["name"])
    assert "created Job shop-" in log
    assert "forbidden" not in log.lower()
    assert pgserver.APP_PASSWORD not in json.dumps(status) + log


def test_two_replicas_one_serves_and_the_other_takes_over(
    control_plane, namespace, node_images, pg, uninstall
) -> None:
    cp = control_plane
    database_secret(cp, namespace, pg)
    install_operator(
        cp, namespace, node_images.runner(), "replicas=2", f"watchNamespaces={{{namespace}}}"
    )
    names = [p["metadata"]["name"] for p in operator_pods(cp, namespace)]
    assert len(names) == 2

    def peers() -> dict[str, Any]:
        obj = json.loads(
            cp.kubectl("get", "kopfpeering", "rel-migrategate", "-n", namespace, "-o", "json")
        )
        assert len(obj.get("status") or {}) == 2, obj
        return obj["status"]

    priorities = {peer["priority"] for peer in eventually(peers, timeout=60).values()}
    assert len(priorities) == 2  # distinct: equal ones would pause both

    def created(pod: str, job: str) -> bool:
        return f"created Job {job}-" in pod_log(cp, namespace, pod)

    image = node_images.app("seed004_ini_url", "v1")
    cp.kubectl("apply", "-f", "-", input=json.dumps(migration("first", namespace, image)))
    cp.kubectl("wait", "--for=condition=Ready", "dbm/first", "-n", namespace, "--timeout=120s")
    (serving,) = [name for name in names if created(name, "first")]  # exactly one served
    (standby,) = [name for name in names if name != serving]

    cp.kubectl("delete", "pod", serving, "-n", namespace, "--wait=true")
    deleted = time.monotonic()
    cp.kubectl("apply", "-f", "-", input=json.dumps(migration("second", namespace, image)))
    eventually(lambda: _assert(created(standby, "second")), timeout=30, interval=0.2)
    took = time.monotonic() - deleted
    print(f"takeover: the standby created the next Job {took:.1f}s after the serving pod went")
    assert took < 15  # stated: about 5 s after a normal deletion
    cp.kubectl("wait", "--for=condition=Ready", "dbm/second", "-n", namespace, "--timeout=120s")
    # The ReplicaSet's replacement pod is younger: it waits, and a third migration is the
    # standby's too.
    eventually(lambda: _assert(len(operator_pods(cp, namespace)) == 2), timeout=60)
    (replacement,) = [
        p["metadata"]["name"]
        for p in operator_pods(cp, namespace)
        if p["metadata"]["name"] != standby
    ]
    cp.kubectl(
        "wait", "--for=condition=Ready", f"pod/{replacement}", "-n", namespace, "--timeout=60s"
    )
    eventually(lambda: _assert(len(peers()) == 2), timeout=60)
    cp.kubectl("apply", "-f", "-", input=json.dumps(migration("third", namespace, image)))
    cp.kubectl("wait", "--for=condition=Ready", "dbm/third", "-n", namespace, "--timeout=120s")
    assert created(standby, "third") and not created(replacement, "third")


def _assert(ok: bool) -> None:
    assert ok


def parent_chart(tmp_path: Path, values: dict[str, Any]) -> Path:
    """A tiny umbrella chart with the operator chart as its subchart, in its charts/."""
    parent = tmp_path / "platform"
    (parent / "charts").mkdir(parents=True)
    shutil.copytree(OPERATOR_CHART, parent / "charts" / "migrategate")
    version = yaml.safe_load((OPERATOR_CHART / "Chart.yaml").read_text())["version"]
    chart = {
        "apiVersion": "v2",
        "name": "platform",
        "version": "0.1.0",
        "dependencies": [{"name": "migrategate", "version": version}],
    }
    (parent / "Chart.yaml").write_text(yaml.safe_dump(chart))
    (parent / "values.yaml").write_text(yaml.safe_dump(values))
    (parent / "templates").mkdir()
    (parent / "templates" / "team.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-team\n"
        "data:\n  team: {{ .Values.global.team | quote }}\n"
    )
    return parent


def test_operator_chart_installs_as_a_subchart_with_globals(
    control_plane, namespace, node_images, pg, tmp_path
) -> None:
    cp = control_plane
    database_secret(cp, namespace, pg)
    cp.kubectl("apply", "-f", str(REPO / "crds" / "databasemigrations.migrategate.io.yaml"))
    repository, tag = node_images.runner().rsplit(":", 1)
    parent = parent_chart(
        tmp_path,
        {
            # A parent's globals reach every subchart: the values schema must let them in.
            "global": {"imageRegistry": "registry.example", "team": "platform"},
            "migrategate": {
                "fullnameOverride": "platform-migrations",
                "image": {"repository": repository, "tag": tag},
                "crds": {"create": False},
                "watchNamespaces": [namespace],
            },
        },
    )
    assert "0 chart(s) failed" in helm(cp, "lint", "--strict", str(parent))
    helm(cp, "install", "platform", str(parent), "-n", namespace, "--wait", "--timeout=120s")
    try:
        (pod,) = operator_pods(cp, namespace)
        assert pod["metadata"]["name"].startswith("platform-migrations-")
        assert pod["spec"]["serviceAccountName"] == "platform-migrations"
        image = node_images.app("seed004_ini_url", "v1")
        cp.kubectl("apply", "-f", "-", input=json.dumps(migration("shop", namespace, image)))
        cp.kubectl("wait", "--for=condition=Ready", "dbm/shop", "-n", namespace, "--timeout=120s")
    finally:
        helm(cp, "uninstall", "platform", "-n", namespace, "--wait", "--timeout=60s", check=False)

"""The Helm charts, rendered by the real `helm` built with the control plane.

The operator chart is linted, rendered and applied; then the operator runs with
the token of the chart's own ServiceAccount, so a completed migration proves the
chart's RBAC is enough, and a refused Secret read proves it is not more.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import migrationkit
import operatorproc
import pgserver
import pytest
import samples
import yaml
from kubeharness.wait import eventually
from migrategate.api import crd as crd_module
from migrategate.runner import contract
from migrationkit import REPO

OPERATOR_CHART = REPO / "charts" / "migrategate"
APP_CHART = REPO / "charts" / "examples" / "app"


def helm(control_plane, *args: str) -> str:
    done = subprocess.run(
        ["helm", *args], env=control_plane.env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


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


# ----------------------------------------------------------------------------- applied


@pytest.mark.parametrize("replicas", [1, 2], ids=["standalone", "peering"])
def test_operator_as_the_charts_serviceaccount_migrates_and_cannot_read_secrets(
    control_plane, namespace, images, pg, runner_payload, tmp_path, replicas: int
) -> None:
    cp = control_plane
    # The operator runs outside the cluster (there is no operator image here), with the
    # token of the chart's ServiceAccount and the settings its Deployment would pass.
    docs = render(
        cp,
        OPERATOR_CHART,
        f"watchNamespaces={{{namespace}}}",
        f"replicas={replicas}",
        namespace=namespace,
        crds=True,
    )
    (deployment,) = of_kind(docs, "Deployment")
    settings = {
        e["name"]: e["value"]
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert ("MIGRATEGATE_PEERING" in settings) == (replicas > 1)
    apply_like_helm(cp, [d for d in docs if d["kind"] != "Deployment"])
    eventually(lambda: cp.kubectl("get", "dbm", "-n", namespace), timeout=30)
    token = cp.kubectl("create", "token", "rel-migrategate", "-n", namespace).strip()
    kubeconfig = migrationkit.token_kubeconfig(
        cp.server, cp.ca_file, token, tmp_path / "sa.kubeconfig"
    )

    db = pg.create_database()
    cp.kubectl(
        "create", "secret", "generic", "db", "-n", namespace, f"--from-literal=url={pg.url(db)}"
    )
    refused = subprocess.run(
        ["kubectl", "--kubeconfig", str(kubeconfig), "get", "secret", "db", "-n", namespace],
        env=cp.env,
        capture_output=True,
        text=True,
    )
    assert refused.returncode != 0 and "forbidden" in refused.stderr.lower()

    images[operatorproc.RUNNER_IMAGE] = migrationkit.runner_image(runner_payload)
    images["chart-app:v1"] = migrationkit.app_image("seed004_ini_url", "v1", tmp_path / "app")
    migration = {
        "apiVersion": "migrategate.io/v1alpha1",
        "kind": "DatabaseMigration",
        "metadata": {"name": "shop", "namespace": namespace},
        "spec": {
            "image": "chart-app:v1",
            "databaseURL": {"secretKeyRef": {"name": "db", "key": "url"}},
        },
    }
    peering = {k: v for k, v in settings.items() if k == "MIGRATEGATE_PEERING"}
    env = {**cp.env, "KUBECONFIG": str(kubeconfig), **peering}
    with operatorproc.running(env, namespace, tmp_path / "operator.log") as op:
        cp.kubectl("apply", "-f", "-", input=json.dumps(migration))
        cp.kubectl("wait", "--for=condition=Ready", "dbm/shop", "-n", namespace, "--timeout=120s")
        assert "forbidden" not in op.log().lower()
        if peering:  # kopf found the chart's peering object and keeps its presence there
            name = peering["MIGRATEGATE_PEERING"]
            obj = cp.kubectl("get", "kopfpeering", name, "-n", namespace, "-o", "json")
            assert json.loads(obj).get("status"), obj
    status = json.loads(cp.kubectl("get", "dbm", "shop", "-n", namespace, "-o", "json"))["status"]
    assert status["currentRevision"] == [samples.head_of("v1")]
    assert pgserver.APP_PASSWORD not in json.dumps(status)

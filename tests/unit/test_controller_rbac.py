"""The operator's RBAC: least privilege, no Secret verbs at all."""

from pathlib import Path

import yaml

RBAC = Path(__file__).resolve().parents[2] / "deploy" / "rbac.yaml"


def rules():
    for doc in yaml.safe_load_all(RBAC.read_text()):
        if doc and doc["kind"] in ("ClusterRole", "Role"):
            yield from doc["rules"]


def test_no_secret_access_and_no_wildcards():
    found = list(rules())
    assert found
    for rule in found:
        assert "secrets" not in rule["resources"]
        assert "*" not in rule["resources"] and "*" not in rule["verbs"]
        assert "*" not in rule["apiGroups"]


def test_jobs_are_never_patched_and_pods_only_read():
    verbs = {
        (g, r): set(rule["verbs"])
        for rule in rules()
        for g in rule["apiGroups"]
        for r in rule["resources"]
    }
    assert verbs[("batch", "jobs")] == {"get", "list", "watch", "create", "delete"}
    # patch only lifts the rollout gate; pods are never created or deleted.
    assert verbs[("", "pods")] == {"get", "list", "watch", "patch"}

"""The checked-in CRD is what the models generate, and it is a structural schema."""

from pathlib import Path

import yaml
from migrategate.api import constants as c
from migrategate.api import crd

ROOT = Path(__file__).resolve().parents[2]
CHECKED_IN = ROOT / "crds" / crd.CRD_FILE


def _walk(node, path="$"):
    yield path, node
    for key, sub in (node.get("properties") or {}).items():
        yield from _walk(sub, f"{path}.{key}")
    if isinstance(node.get("items"), dict):
        yield from _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _walk(node["additionalProperties"], f"{path}{{}}")


def _schema():
    return crd.build()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def test_checked_in_crd_is_not_stale():
    assert CHECKED_IN.read_text() == crd.render(), (
        "crds/ is stale: run `migrategate crd` (make crd) and commit the result"
    )


def test_every_node_is_structural():
    for path, node in _walk(_schema()):
        assert "type" in node, f"{path} has no type"
        for banned in ("$ref", "anyOf", "allOf", "oneOf", "title", "$defs"):
            assert banned not in node, f"{path} carries {banned}"
        if node.get("x-kubernetes-preserve-unknown-fields"):
            assert node["type"] == "object" and "properties" not in node, path


def test_every_spec_and_status_field_is_described():
    schema = _schema()
    for root in ("spec", "status"):
        for path, node in _walk(schema["properties"][root], root):
            if path.endswith(("[]", "{}")):  # list items and map values: their field says it
                continue
            assert node.get("description"), f"{path} has no description for kubectl explain"


def test_passthrough_only_for_embedded_kubernetes_types():
    preserved = {
        path for path, node in _walk(_schema()) if node.get("x-kubernetes-preserve-unknown-fields")
    }
    job = "$.spec.job."
    expected = {
        job + "resources",
        job + "affinity",
        job + "securityContext",
        job + "podSecurityContext",
        job + "tolerations[]",
        job + "imagePullSecrets[]",
        job + "env[]",
        job + "envFrom[]",
    }
    assert preserved == expected
    assert not any(p.startswith("$.status") for p in preserved)


def test_defaults_required_and_enums_reach_the_schema():
    spec = _schema()["properties"]["spec"]
    assert spec["required"] == ["image", "databaseURL"]
    props = spec["properties"]
    assert props["alembic"]["default"] == {}
    assert props["alembic"]["properties"]["target"]["default"] == "head"
    assert props["runner"]["properties"]["mode"]["enum"] == ["inject", "installed"]
    assert props["runner"]["properties"]["mode"]["default"] == "inject"
    assert props["runner"]["properties"]["driver"]["enum"] == [
        "auto",
        "psycopg",
        "psycopg2",
        "asyncpg",
    ]
    assert "self.maxBackoffSeconds >=" in props["retry"]["x-kubernetes-validations"][0]["rule"]
    assert props["databaseURL"]["properties"]["secretKeyRef"]["required"] == ["name", "key"]
    assert props["historyLimit"]["default"] == 3
    status = _schema()["properties"]["status"]
    assert not any("default" in node for _, node in _walk(status))
    conds = status["properties"]["conditions"]
    assert conds["x-kubernetes-list-type"] == "map"
    assert conds["items"]["required"] == ["type", "status"]


def test_names_columns_and_status_subresource():
    doc = yaml.safe_load(CHECKED_IN.read_text())
    assert doc["metadata"]["name"] == "databasemigrations.migrategate.io"
    assert doc["spec"]["names"]["shortNames"] == ["dbm"]
    version = doc["spec"]["versions"][0]
    assert version["name"] == c.VERSION and version["subresources"] == {"status": {}}
    columns = [col["name"] for col in version["additionalPrinterColumns"] if "priority" not in col]
    assert columns == ["Phase", "Image", "Revision", "Age"]

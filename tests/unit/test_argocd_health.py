"""health.lua under a real Lua 5.1 interpreter (lupa.lua51), as Argo CD runs it.

The script lives where argo-cd keeps its checks,
argocd/resource_customizations/migrategate.io/DatabaseMigration/, beside its
health_test.yaml and testdata/ (captured from the operator by
tests/cluster/test_argocd_status.py). test_health_test_yaml runs that file as
argo-cd's own test does; the other tests build a DatabaseMigration as the API
server would return it, set it as the global `obj` and run the script itself.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

lua51 = pytest.importorskip("lupa.lua51", reason="lupa>=2 ships the Lua 5.1 runtime")

REPO_ROOT = Path(__file__).resolve().parents[2]
HEALTH_DIR = (
    REPO_ROOT / "argocd" / "resource_customizations" / "migrategate.io" / "DatabaseMigration"
)
SCRIPT_PATH = HEALTH_DIR / "health.lua"
SCRIPT = SCRIPT_PATH.read_text()
CM_KEY = "resource.customizations.health.migrategate.io_DatabaseMigration"
ARGO_HEALTH = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}


def to_lua(runtime: Any, value: Any) -> Any:
    """Convert decoded JSON to Lua values: dicts to tables, lists to 1-based tables."""
    if isinstance(value, dict):
        table = runtime.table()
        for key, item in value.items():
            table[key] = to_lua(runtime, item)
        return table
    if isinstance(value, list):
        table = runtime.table()
        for index, item in enumerate(value, start=1):
            table[index] = to_lua(runtime, item)
        return table
    return value


# Argo CD runs a custom health script with only the base, table and package
# libraries open (util/lua/lua.go, unless useOpenLibs), plus a restricted os.
# Strip the rest, string methods included, so a script that needs them fails here too.
ARGO_SANDBOX = """
debug.setmetatable("", nil)
string, math, io, debug, coroutine, os = nil, nil, nil, nil, nil, nil
"""


CRD_SCHEMA = yaml.safe_load(
    (REPO_ROOT / "crds" / "databasemigrations.migrategate.io.yaml").read_text()
)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
JSON_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
}


def schema_errors(value: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Where value strays from the CRD's structural schema: unknown fields, types, enums."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    expected = JSON_TYPES.get(schema.get("type", ""), (object,))
    if not isinstance(value, expected) or (isinstance(value, bool) and bool not in expected):
        return [f"{path or '.'}: {value!r} is not {schema.get('type')}"]
    errors = []
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: {value!r} not in {schema['enum']}")
    if isinstance(value, dict) and "properties" in schema:
        properties = schema["properties"]
        for key, item in value.items():
            if key not in properties:
                errors.append(f"{path}.{key}: not in the CRD")
            else:
                errors += schema_errors(item, properties[key], f"{path}.{key}")
        errors += [
            f"{path}.{key}: required" for key in schema.get("required", ()) if key not in value
        ]
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            errors += schema_errors(item, schema["items"], f"{path}[{index}]")
    return errors


def assess(obj: dict[str, Any]) -> tuple[str, str]:
    """Run health.lua against obj in a fresh Lua 5.1 state; return (status, message)."""
    # The samples are objects the API server would accept, so they track the CRD.
    assert schema_errors(obj, CRD_SCHEMA) == []
    runtime = lua51.LuaRuntime(unpack_returned_tuples=True)
    runtime.execute(ARGO_SANDBOX)
    runtime.globals().obj = to_lua(runtime, obj)
    hs = runtime.execute(SCRIPT)
    result = dict(hs.items())
    assert set(result) == {"status", "message"}, result
    status, message = result["status"], result["message"]
    assert status in ARGO_HEALTH
    assert isinstance(message, str) and message
    return status, message


def condition(
    kind: str, status: str, generation: int | None, reason: str = "", message: str = ""
) -> dict[str, Any]:
    cond: dict[str, Any] = {
        "type": kind,
        "status": status,
        "lastTransitionTime": "2026-11-21T23:00:00Z",
        "reason": reason or kind,
        "message": message,
    }
    if generation is not None:
        cond["observedGeneration"] = generation
    return cond


def migration(
    generation: int | None = 2,
    observed: int | None = 2,
    conditions: list[dict[str, Any]] | None = None,
    **status: Any,
) -> dict[str, Any]:
    """A DatabaseMigration with the given status; status=None leaves status out."""
    metadata: dict[str, Any] = {"name": "shop", "namespace": "default", "uid": "b7c1"}
    if generation is not None:
        metadata["generation"] = generation
    obj: dict[str, Any] = {
        "apiVersion": "migrategate.io/v1alpha1",
        "kind": "DatabaseMigration",
        "metadata": metadata,
        "spec": {
            "image": "registry.example.com/shop:2.0.0",
            "databaseURL": {"secretKeyRef": {"name": "shop-db", "key": "url"}},
        },
    }
    body: dict[str, Any] = dict(status)
    if observed is not None:
        body["observedGeneration"] = observed
    if conditions is not None:
        body["conditions"] = conditions
    if body:
        obj["status"] = body
    return obj


def ready_status(generation: int = 2) -> list[dict[str, Any]]:
    return [
        condition("Ready", "True", generation, "Migrated", "Migrated to 3f2a9c1b (2 revisions)"),
        condition("Reconciling", "False", generation, "Idle"),
        condition("Stalled", "False", generation, "Idle"),
    ]


def test_interpreter_is_lua_51() -> None:
    assert lua51.LuaRuntime().eval("_VERSION") == "Lua 5.1"


def test_sandbox_has_no_string_library() -> None:
    runtime = lua51.LuaRuntime()
    runtime.execute(ARGO_SANDBOX)
    with pytest.raises(lua51.LuaError):
        runtime.execute('return ("Ready"):lower()')
    assert runtime.eval("type(ipairs) == 'function' and type(table.insert) == 'function'")


def test_no_status_is_progressing() -> None:
    assert assess(migration(observed=None)) == (
        "Progressing",
        "Waiting for the migrategate operator to report status",
    )


def test_empty_status_is_progressing() -> None:
    obj = migration(observed=None)
    obj["status"] = {}
    assert assess(obj)[0] == "Progressing"


def test_observed_generation_behind_is_progressing_despite_old_ready() -> None:
    # Argo CD just applied a new image: generation 3, status still for generation 2.
    status, message = assess(migration(generation=3, observed=2, conditions=ready_status(2)))
    assert status == "Progressing"
    assert "generation 3" in message and "generation 2" in message


def test_reconciling_is_progressing_with_its_message() -> None:
    conditions = [
        condition("Ready", "False", 2, "Migrating", "Job shop-7d1e running"),
        condition("Reconciling", "True", 2, "JobRunning", "Job shop-7d1e is migrating"),
        condition("Stalled", "False", 2, "Idle"),
    ]
    assert assess(migration(conditions=conditions, phase="Running")) == (
        "Progressing",
        "Job shop-7d1e is migrating",
    )


def test_stalled_is_degraded_with_its_message() -> None:
    conditions = [
        condition("Ready", "False", 2, "MigrationFailed", "failed"),
        condition("Reconciling", "False", 2, "Failed"),
        condition(
            "Stalled", "True", 2, "MigrationFailed", "revision 3f2a9c1b: relation already exists"
        ),
    ]
    assert assess(migration(conditions=conditions, phase="Failed")) == (
        "Degraded",
        "revision 3f2a9c1b: relation already exists",
    )


def test_stalled_without_message_uses_reason() -> None:
    conditions = [condition("Stalled", "True", 2, "SecretNotFound", "")]
    assert assess(migration(conditions=conditions)) == ("Degraded", "SecretNotFound")


def test_ready_for_current_generation_is_healthy() -> None:
    assert assess(migration(conditions=ready_status(2), phase="Succeeded")) == (
        "Healthy",
        "Migrated to 3f2a9c1b (2 revisions)",
    )


def test_ready_without_message_names_migrated_image() -> None:
    conditions = [condition("Ready", "True", 2, "", "")]
    conditions[0]["reason"] = ""
    obj = migration(conditions=conditions, migratedImage="registry.example.com/shop:2.0.0")
    assert assess(obj) == ("Healthy", "Migrated registry.example.com/shop:2.0.0")


def test_ready_condition_for_older_generation_is_progressing() -> None:
    # Status-level observedGeneration moved on but the Ready condition was not rewritten yet.
    conditions = [condition("Ready", "True", 1, "Migrated", "old")]
    status, message = assess(migration(generation=2, observed=2, conditions=conditions))
    assert status == "Progressing"
    assert "generation 1" in message and "generation 2" in message


def test_no_conditions_is_progressing() -> None:
    status, message = assess(migration(phase="Pending"))
    assert (status, message) == ("Progressing", "Waiting for the Ready condition")


def test_empty_conditions_uses_status_message() -> None:
    obj = migration(conditions=[], phase="Pending", message="Waiting for Secret shop-db")
    assert assess(obj) == ("Progressing", "Waiting for Secret shop-db")


def test_ready_false_without_stalled_is_progressing() -> None:
    conditions = [condition("Ready", "False", 2, "Retrying", "database unreachable, retry 2 of 6")]
    assert assess(migration(conditions=conditions)) == (
        "Progressing",
        "database unreachable, retry 2 of 6",
    )


def test_stalled_and_ready_both_true_is_degraded() -> None:
    conditions = [
        condition("Ready", "True", 2, "Migrated", "ok"),
        condition("Stalled", "True", 2, "VerificationFailed", "heads differ from target"),
    ]
    assert assess(migration(conditions=conditions)) == ("Degraded", "heads differ from target")


def test_stalled_false_and_ready_true_is_healthy() -> None:
    conditions = [
        condition("Stalled", "False", 2, "Idle"),
        condition("Ready", "True", 2, "Migrated", "ok"),
    ]
    assert assess(migration(conditions=conditions)) == ("Healthy", "ok")


def test_stalled_for_older_generation_is_progressing() -> None:
    # A failure of generation 1; generation 2 (a fixed spec) is not assessed yet.
    conditions = [condition("Stalled", "True", 1, "MigrationFailed", "boom")]
    assert assess(migration(generation=2, observed=2, conditions=conditions))[0] == "Progressing"


def test_reconciling_wins_over_stalled() -> None:
    conditions = [
        condition("Reconciling", "True", 2, "Retrying", "retrying after transient error"),
        condition("Stalled", "True", 2, "MigrationFailed", "old failure"),
    ]
    assert assess(migration(conditions=conditions)) == (
        "Progressing",
        "retrying after transient error",
    )


def test_missing_generation_trusts_conditions() -> None:
    assert assess(migration(generation=None, observed=None, conditions=ready_status(2)))[0] == (
        "Healthy"
    )
    stalled = [condition("Stalled", "True", 5, "MigrationFailed", "boom")]
    assert assess(migration(generation=None, conditions=stalled)) == ("Degraded", "boom")


def test_missing_metadata_does_not_crash() -> None:
    obj = migration(conditions=ready_status(2))
    del obj["metadata"]
    assert assess(obj)[0] == "Healthy"


def test_conditions_without_observed_generation_are_accepted() -> None:
    conditions = [condition("Ready", "True", None, "Migrated", "ok")]
    assert assess(migration(conditions=conditions)) == ("Healthy", "ok")


def test_suspended_and_not_ready_is_suspended() -> None:
    obj = migration(conditions=[condition("Ready", "False", 2, "Suspended", "")])
    obj["spec"]["suspend"] = True
    status, message = assess(obj)
    assert status == "Suspended"
    assert "suspend" in message


def test_suspend_keeps_a_succeeded_migration_healthy_and_a_running_one_progressing() -> None:
    healthy = migration(conditions=ready_status(2))
    healthy["spec"]["suspend"] = True
    assert assess(healthy)[0] == "Healthy"
    running = migration(conditions=[condition("Reconciling", "True", 2, "JobRunning", "running")])
    running["spec"]["suspend"] = True
    assert assess(running) == ("Progressing", "running")


def test_health_test_yaml() -> None:
    """argo-cd's own format: each test names a testdata object and the health it gives."""
    tests = yaml.safe_load((HEALTH_DIR / "health_test.yaml").read_text())["tests"]
    inputs = sorted(t["inputPath"] for t in tests)
    assert inputs == sorted(f"testdata/{p.name}" for p in (HEALTH_DIR / "testdata").iterdir())
    statuses = {t["healthStatus"]["status"] for t in tests}
    assert statuses == {"Healthy", "Progressing", "Degraded", "Suspended"}
    for test in tests:
        obj = yaml.safe_load((HEALTH_DIR / test["inputPath"]).read_text())
        want = test["healthStatus"]
        assert assess(obj) == (want["status"], want["message"]), test["inputPath"]


def test_first_condition_is_found() -> None:
    # Lua lists are 1-based: a 0-based loop would miss a lone first condition.
    assert assess(migration(conditions=[condition("Ready", "True", 2, "M", "only")])) == (
        "Healthy",
        "only",
    )


def test_script_does_not_change_the_object() -> None:
    obj = migration(generation=3, observed=2, conditions=ready_status(2))
    before = copy.deepcopy(obj)
    assess(obj)
    assert obj == before


# --- No copies of the script in docs and YAML: they point at health.lua. ---

MARKER = SCRIPT.splitlines()[0]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
EMBEDDING_SUFFIXES = {".md", ".yaml", ".yml", ".tpl", ".txt"}
SKIP_DIRS = {".git", ".venv", "node_modules", "__pycache__", ".pytest_cache", ".ruff_cache"}


def _strings(node: Any) -> Iterator[tuple[str, str]]:
    """Every (key, string value) pair in a decoded YAML document."""
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, str):
                yield str(key), value
            else:
                yield from _strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)


def _embedded_copies(path: Path) -> list[tuple[str, str]]:
    """(where, text) of each copy of the script found in path."""
    text = path.read_text()
    copies: list[tuple[str, str]] = []
    if path.suffix == ".md":
        for number, match in enumerate(FENCE.finditer(text), start=1):
            language, body = match.group(1), match.group(2)
            if language == "lua" and MARKER in body:
                copies.append((f"{path}: lua block {number}", body))
            elif language in {"yaml", "yml"} and MARKER in body:
                for document in yaml.safe_load_all(body):
                    for key, value in _strings(document):
                        if MARKER in value:
                            copies.append((f"{path}: yaml block {number}, {key}", value))
    elif MARKER in text:
        documents = list(yaml.safe_load_all(text)) if path.suffix in {".yaml", ".yml"} else []
        found = [(k, v) for document in documents for k, v in _strings(document) if MARKER in v]
        copies.extend((f"{path}: {key}", value) for key, value in found)
        if not found:
            copies.append((f"{path}: not a YAML value", ""))
    return copies


def _files_that_may_embed() -> Iterator[Path]:
    for directory, subdirectories, files in os.walk(REPO_ROOT):
        subdirectories[:] = [d for d in subdirectories if d not in SKIP_DIRS]
        for name in files:
            path = Path(directory, name)
            if path.suffix in EMBEDDING_SUFFIXES:
                yield path


def test_no_copy_of_the_script_anywhere() -> None:
    """health.lua is the only copy: docs point at it, they do not carry it."""
    copies = [copy_ for path in _files_that_may_embed() for copy_ in _embedded_copies(path)]
    assert copies == []


def test_readme_installs_by_reading_the_script() -> None:
    readme = (REPO_ROOT / "argocd" / "README.md").read_text()
    where = SCRIPT_PATH.relative_to(REPO_ROOT).as_posix()
    assert f'"{CM_KEY}": $lua' in readme and f"--rawfile lua {where}" in readme
    escaped = CM_KEY.replace(".", "\\.")
    assert f"--set-file 'configs.cm.{escaped}={where}'" in readme


def test_readme_sync_waves() -> None:
    readme = (REPO_ROOT / "argocd" / "README.md").read_text()
    documents = [
        document
        for match in FENCE.finditer(readme)
        if match.group(1) == "yaml"
        for document in yaml.safe_load_all(match.group(2))
    ]
    waves = {
        d["kind"]: d["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"]
        for d in documents
        if d.get("kind") in {"DatabaseMigration", "Deployment"}
    }
    assert waves == {"DatabaseMigration": "-1", "Deployment": "0"}
    migrations = [d for d in documents if d.get("kind") == "DatabaseMigration"]
    assert [schema_errors(d, CRD_SCHEMA) for d in migrations] == [[]]


def test_schema_errors_sees_a_misspelt_field() -> None:
    obj = migration(conditions=ready_status(2))
    obj["spec"]["databaseUrl"] = obj["spec"].pop("databaseURL")
    obj["status"]["conditions"][0]["status"] = "Yes"
    errors = schema_errors(obj, CRD_SCHEMA)
    assert errors[:2] == [".spec.databaseUrl: not in the CRD", ".spec.databaseURL: required"]
    assert len(errors) == 3 and errors[2].startswith(".status.conditions[0].status: 'Yes' not in")

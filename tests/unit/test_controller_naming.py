"""Job names and the content hash."""

import re

from hypothesis import given
from hypothesis import strategies as st
from migrategate.api.models import DatabaseMigrationSpec
from migrategate.controller.naming import MAX_NAME, content_hash, job_name

BASE = {"image": "app:1", "databaseURL": {"secretKeyRef": {"name": "db", "key": "url"}}}
DNS = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def h(change=None, rerun=None):
    return content_hash(DatabaseMigrationSpec.model_validate({**BASE, **(change or {})}), rerun)


def test_what_runs_changes_the_hash():
    base = h()
    assert h({"image": "app:2"}) != base
    assert h({"alembic": {"target": "abc"}}) != base
    assert h({"runner": {"mode": "installed"}}) != base
    assert h({"job": {"resources": {"limits": {"memory": "1Gi"}}}}) != base
    assert h(rerun="again") != base
    assert h(rerun="again") != h(rerun="once more")


def test_operator_only_fields_and_spelled_out_defaults_do_not():
    base = h()
    assert h({"retry": {"limit": 9}}) == base
    assert h({"historyLimit": 7, "suspend": True}) == base
    assert h({"gate": {"deployments": ["web"]}}) == base
    assert h({"alembic": {"target": "head", "config": "alembic.ini"}}) == base


def test_retries_get_a_numeric_suffix():
    assert job_name("shop", "abcdef0123") == "shop-abcdef0123"
    assert job_name("shop", "abcdef0123", 3) == "shop-abcdef0123-3"


@given(st.from_regex(r"[a-z0-9]([-a-z0-9]{0,251}[a-z0-9])?", fullmatch=True), st.integers(1, 100))
def test_names_fit_63_chars_and_stay_dns_labels(name, attempt):
    out = job_name(name, "abcdef0123", attempt)
    assert len(out) <= MAX_NAME
    assert DNS.match(out)
    assert out.endswith("-abcdef0123" + (f"-{attempt}" if attempt > 1 else ""))

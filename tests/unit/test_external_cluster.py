"""kubeharness.external without a cluster: the kubeconfig it reads, the credentials it
writes for the watch client, the image map, and the PostgreSQL it is pointed at."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pgserver
import pytest
import yaml
from kubeharness import external
from kubeharness.external import KubeconfigError
from kubeharness.kubeapi import KubeAPI

TESTS = Path(__file__).resolve().parents[1]


CA = b"-----BEGIN CERTIFICATE-----\nca\n-----END CERTIFICATE-----\n"
CERT = b"-----BEGIN CERTIFICATE-----\nclient\n-----END CERTIFICATE-----\n"
KEY = b"-----BEGIN EC PRIVATE KEY-----\nkey\n-----END EC PRIVATE KEY-----\n"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def kubeconfig(tmp_path: Path, cluster: dict, user: dict, current: str = "ctx") -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "other", "cluster": {"server": "https://elsewhere:1"}},
            {"name": "c", "cluster": cluster},
        ],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
        "current-context": current,
    }
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump(config))
    return path


# ----------------------------------------------------------------------------- kubeconfig


def test_kind_style_kubeconfig_with_embedded_data(tmp_path: Path) -> None:
    path = kubeconfig(
        tmp_path,
        {"server": "https://127.0.0.1:40123/", "certificate-authority-data": b64(CA)},
        {"client-certificate-data": b64(CERT), "client-key-data": b64(KEY)},
    )
    access = external.read_kubeconfig(path)
    assert access == external.Access("https://127.0.0.1:40123", CA, CERT, KEY, None)


def test_files_are_relative_to_the_kubeconfig(tmp_path: Path) -> None:
    (tmp_path / "pki").mkdir()
    for name, data in {"ca.crt": CA, "admin.crt": CERT, "admin.key": KEY}.items():
        (tmp_path / "pki" / name).write_bytes(data)
    path = kubeconfig(
        tmp_path,
        {"server": "https://10.234.0.1:6443", "certificate-authority": "pki/ca.crt"},
        {"client-certificate": "pki/admin.crt", "client-key": str(tmp_path / "pki/admin.key")},
    )
    access = external.read_kubeconfig(path)
    assert (access.ca, access.client_cert, access.client_key) == (CA, CERT, KEY)


def test_token_and_token_file(tmp_path: Path) -> None:
    cluster = {"server": "https://k:6443", "certificate-authority-data": b64(CA)}
    access = external.read_kubeconfig(kubeconfig(tmp_path, cluster, {"token": "abc"}))
    assert access.token == "abc" and access.client_cert is None
    (tmp_path / "tok").write_text("def\n")
    access = external.read_kubeconfig(kubeconfig(tmp_path, cluster, {"tokenFile": "tok"}))
    assert access.token == "def"


def test_without_a_ca_the_system_bundle_serves(tmp_path: Path) -> None:
    access = external.read_kubeconfig(kubeconfig(tmp_path, {"server": "https://k"}, {"token": "t"}))
    assert access.ca == external.system_ca_bundle()


@pytest.mark.parametrize(
    ("cluster", "user", "current", "message"),
    [
        ({"server": "https://k"}, {"exec": {"command": "aws"}}, "ctx", "exec"),
        ({"server": "https://k"}, {"auth-provider": {"name": "gcp"}}, "ctx", "auth-provider"),
        ({"server": "k", "insecure-skip-tls-verify": True}, {"token": "t"}, "ctx", "insecure"),
        ({"server": "https://k"}, {}, "ctx", "no certificate or token"),
        ({"server": "https://k"}, {"token": "t"}, "", "no current-context"),
        ({"server": "https://k"}, {"token": "t"}, "nope", "no context named 'nope'"),
    ],
)
def test_unsupported_kubeconfigs_say_why(
    tmp_path: Path, cluster: dict, user: dict, current: str, message: str
) -> None:
    with pytest.raises(KubeconfigError, match=message):
        external.read_kubeconfig(kubeconfig(tmp_path, cluster, user, current))


def test_write_pki_for_a_certificate_user(tmp_path: Path) -> None:
    ca_file = external.write_pki(external.Access("https://k", CA, CERT, KEY), tmp_path / "pki")
    assert ca_file == tmp_path / "pki" / "ca.crt" and ca_file.read_bytes() == CA
    assert (tmp_path / "pki" / "admin.crt").read_bytes() == CERT
    assert (tmp_path / "pki" / "admin.key").read_bytes() == KEY
    assert not (tmp_path / "pki" / "token").exists()
    for path in (tmp_path / "pki").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_the_watch_client_sends_a_token_user_its_token(tmp_path: Path) -> None:
    bundle = external.system_ca_bundle()  # a CA file ssl can load
    pki = tmp_path / "pki"
    external.write_pki(external.Access("https://k", bundle, token="s3cret"), pki)
    assert sorted(p.name for p in pki.iterdir()) == ["ca.crt", "token"]

    async def headers() -> dict[str, str]:
        api = KubeAPI("https://k", pki)
        try:
            return dict(api.session.headers)
        finally:
            await api.close()

    assert asyncio.run(headers())["Authorization"] == "Bearer s3cret"


def test_kubeconfig_path_only_from_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    assert external.kubeconfig_path({}) is None
    assert external.kubeconfig_path({external.KUBECONFIG_ENV: ""}) is None
    monkeypatch.chdir("/tmp")
    assert external.kubeconfig_path({external.KUBECONFIG_ENV: "k.yaml"}) == Path("/tmp/k.yaml")


# ----------------------------------------------------------------------------- images


def test_image_map_lookups() -> None:
    data = {
        "runner": "localhost/migrategate:e2e",
        "app/seed004_ini_url/v1/root": "localhost/migrategate-app:seed004_ini_url-v1-root",
    }
    images = external.MappedImages(external.parse_image_map(data), "map.json")
    assert images.runner() == "localhost/migrategate:e2e"
    assert images.app("seed004_ini_url", "v1") == data["app/seed004_ini_url/v1/root"]
    with pytest.raises(LookupError, match="app/seed004_ini_url/v2/root is not in map.json"):
        images.app("seed004_ini_url", "v2")
    with pytest.raises(LookupError, match="busybox is not in map.json"):
        images.busybox()
    with pytest.raises(pytest.skip.Exception, match="files of its own"):
        images.app("seed004_ini_url", "v1", files={"serve.py": ""})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (["runner"], "expected a JSON object"),
        ({"app/seed004_ini_url/v1/root": "x"}, "no 'runner'"),
        ({"runner": "x", "app/seed004_ini_url/v1": "y"}, "unknown key"),
        ({"runner": "x", "operator": "y"}, "unknown key"),
        ({"runner": ""}, "must name an image"),
        ({"runner": 3}, "must name an image"),
    ],
)
def test_bad_image_maps_are_refused(data: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        external.parse_image_map(data)


def test_mapped_images_from_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "images.json"
    path.write_text(json.dumps({"runner": "r:1"}))
    assert external.mapped_images({external.IMAGES_ENV: str(path)}).runner() == "r:1"
    with pytest.raises(pytest.skip.Exception, match=external.IMAGES_ENV):
        external.mapped_images({})


# ----------------------------------------------------------------------------- PostgreSQL


def test_admin_url_with_special_characters() -> None:
    url = "postgresql://super%40user:p%40ss%3Aw%2Frd@172.18.0.3:5433/postgres"
    assert external.parse_admin_url(url) == external.PgAddress(
        "super@user", "p@ss:w/rd", "172.18.0.3", 5433
    )
    assert external.parse_admin_url("postgres://u:p@db").port == 5432


@pytest.mark.parametrize("url", ["mysql://u:p@h:1", "postgresql://u@h:1", "postgresql:///x"])
def test_bad_admin_urls(url: str) -> None:
    with pytest.raises(ValueError, match=external.PG_ADMIN_URL_ENV):
        external.parse_admin_url(url)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("pg", ("pg", 5432)), ("pg:6000", ("pg", 6000)), ("[fd00::3]:7", ("fd00::3", 7))],
)
def test_host_port(value: str, expected: tuple[str, int]) -> None:
    assert external.parse_host_port(value, 5432) == expected


def test_pods_get_the_pod_address_the_test_process_the_admin_one(tmp_path: Path) -> None:
    env = {
        external.PG_ADMIN_URL_ENV: "postgresql://postgres:pw@127.0.0.1:15432",
        external.PG_POD_HOST_ENV: "pg.db.svc:5432",
    }
    pg = external.pg_from_env(tmp_path, env)
    assert pg.url("db1") == (
        f"postgresql+asyncpg://app_user:{pgserver.APP_PASSWORD}@pg.db.svc:5432/db1"
    )
    assert pg.local_url("db1").endswith("@127.0.0.1:15432/db1")
    special = pg.url("db1", pgserver.SPECIAL_USER, pgserver.SPECIAL_PASSWORD, "postgresql")
    assert (
        special == "postgresql://app_special:p%40ss%3Aw%2Frd%25%3F%23%26%20x-9Q@pg.db.svc:5432/db1"
    )
    assert (pg.superuser, pg.superuser_password) == ("postgres", "pw")


def test_without_a_pod_host_pods_use_the_admin_address(tmp_path: Path) -> None:
    pg = external.pg_from_env(tmp_path, {external.PG_ADMIN_URL_ENV: "postgresql://a:b@10.0.0.9"})
    assert pg.url("d").endswith("@10.0.0.9:5432/d") and pg.local_url("d") == pg.url("d")


def test_stop_and_start_run_the_given_commands_or_skip(tmp_path: Path) -> None:
    marker = tmp_path / "stopped"
    env = {
        external.PG_ADMIN_URL_ENV: "postgresql://a:b@127.0.0.1:9",
        external.PG_STOP_ENV: f"touch '{marker}'",
    }
    external.pg_from_env(tmp_path, env).stop()
    assert marker.exists()
    with pytest.raises(pytest.skip.Exception, match=external.PG_START_ENV):
        external.pg_from_env(tmp_path, env).start()
    env.pop(external.PG_STOP_ENV)
    with pytest.raises(pytest.skip.Exception, match=external.PG_STOP_ENV):
        external.pg_from_env(tmp_path, env).stop()
    with pytest.raises(pytest.skip.Exception, match=external.PG_ADMIN_URL_ENV):
        external.pg_from_env(tmp_path, {})


def test_local_server_local_url_is_its_url(tmp_path: Path) -> None:
    server = pgserver.PgServer(base_dir=tmp_path, host="10.234.0.1", port=5555)
    assert server.local_url("d") == server.url("d")


# ----------------------------------------------------------------------------- the mode


def test_own_node_tests_skip_against_an_existing_cluster(tmp_path: Path) -> None:
    """The conftest wiring: with MIGRATEGATE_KUBECONFIG set, a harness test skips, saying
    why, before any fixture runs (so no cluster is needed for this check)."""
    env = {**os.environ, "CI": "", external.KUBECONFIG_ENV: str(tmp_path / "none")}
    target = f"{TESTS / 'cluster' / 'test_harness.py'}::test_node_is_registered_ready"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", target],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=TESTS.parent,
    )
    assert "1 skipped" in done.stdout, done.stdout[-2000:]
    assert "MIGRATEGATE_KUBECONFIG is set: this test needs the local cluster's own node" in (
        done.stdout
    )

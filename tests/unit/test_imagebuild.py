"""kubeharness.imagebuild without buildah: keys, names, the cache and the commands it would run.

A fake command runner stands in for buildah, mmdebstrap and ctr: it records
every argv and writes the files those commands would write, so the tests see
what a build runs, and that a cache hit runs nothing at all.
"""

from __future__ import annotations

import io
import shutil
import tarfile
from collections.abc import Sequence
from pathlib import Path

import pytest
import samples
from kubeharness import imagebuild as ib
from kubeharness.imagebuild import BuildError, ImageBuilder

TESTS = Path(__file__).resolve().parents[1]


REPO = Path(__file__).resolve().parents[2]


class FakeRunner:
    """Records argv lists; plays the part of each command just enough for the builder."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.calls: list[list[str]] = []
        self.fail_on = fail_on
        self.containers = 0
        self.listed: list[str] = []  # what `buildah images` prints

    def __call__(self, argv: Sequence[str], log: Path) -> str:
        argv = list(argv)
        self.calls.append(argv)
        verb = argv[1] if argv[0] == "buildah" else Path(argv[0]).name
        if verb == self.fail_on:
            raise BuildError(f"{verb} failed (exit 1): boom")
        if verb == "mmdebstrap":
            Path(argv[-2]).write_bytes(b"rootfs")
        elif verb == "push":
            Path(argv[-1].removeprefix("oci-archive:")).write_bytes(b"oci")
        elif verb == "from":
            self.containers += 1
            return f"working-container-{self.containers}\n"
        elif verb == "images":
            return "\n".join(self.listed) + "\n"
        elif verb == "pull":
            return "0123abcd\n"
        elif verb == "busybox":
            return "bin/sh\nusr/bin/env\n"
        return ""

    def verbs(self) -> list[str]:
        return [c[1] if c[0] == "buildah" else Path(c[0]).name for c in self.calls]

    def buildah(self, verb: str) -> list[list[str]]:
        return [c for c in self.calls if c[0] == "buildah" and c[1] == verb]


@pytest.fixture
def runner() -> FakeRunner:
    return FakeRunner()


def make_builder(tmp_path: Path, runner: FakeRunner, **kwargs: Path) -> ImageBuilder:
    fake_busybox = tmp_path / "busybox"
    if not fake_busybox.exists():
        fake_busybox.write_bytes(b"\x7fELF busybox")
    kwargs.setdefault("busybox_binary", fake_busybox)
    return ImageBuilder(cache=tmp_path / "cache", run=runner, log=lambda _m: None, **kwargs)


@pytest.fixture
def builder(tmp_path: Path, runner: FakeRunner) -> ImageBuilder:
    return make_builder(tmp_path, runner)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A copy of what the Dockerfile reads, plus things it must not depend on."""
    dest = tmp_path / "repo"
    for rel in (".dockerignore", "pyproject.toml", "README.md"):
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, dest / rel)
    for rel in ("operator", "image"):
        shutil.copytree(REPO / rel, dest / rel, ignore=shutil.ignore_patterns("__pycache__"))
    (dest / "tests").mkdir()
    (dest / "tests" / "x.py").write_text("x = 1\n")
    return dest


# --- content keys ------------------------------------------------------------------------


def test_content_key_is_stable_and_sees_every_byte_and_label() -> None:
    parts = [("a", b"1"), ("b", b"2")]
    assert ib.content_key(parts) == ib.content_key(list(parts))
    assert ib.content_key(parts) != ib.content_key([("a", b"1"), ("b", b"3")])
    assert ib.content_key(parts) != ib.content_key([("a", b"1"), ("c", b"2")])
    # Lengths are hashed: moving a byte across the boundary is a different input.
    assert ib.content_key([("a", b"12"), ("b", b"")]) != ib.content_key([("a", b"1"), ("b", b"2")])


def test_tree_parts_sees_contents_new_files_and_the_exec_bit(tmp_path: Path) -> None:
    root = tmp_path / "t"
    (root / "pkg").mkdir(parents=True)
    script = root / "pkg" / "a.py"
    script.write_text("a = 1\n")

    def key() -> str:
        return ib.content_key(ib.tree_parts(root, tmp_path, ["**/__pycache__"]))

    first = key()
    (root / "pkg" / "__pycache__").mkdir()
    (root / "pkg" / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"\0")
    assert key() == first, "ignored files do not count"
    script.write_text("a = 2\n")
    second = key()
    assert second != first
    script.chmod(0o755)
    third = key()
    assert third != second
    (root / "pkg" / "b.py").write_text("")
    assert key() != third


@pytest.mark.parametrize(
    ("rel", "ignored"),
    [
        ("tests/x.py", True),
        ("operator/migrategate/__pycache__/x.pyc", True),
        ("operator/migrategate/x.pyc", True),
        ("operator/migrategate.egg-info/PKG-INFO", True),
        ("operator/migrategate/__init__.py", False),
        ("image/Dockerfile", False),
        ("pyproject.toml", False),
    ],
)
def test_the_repositorys_dockerignore(rel: str, ignored: bool) -> None:
    assert ib.is_ignored(rel, ib.read_ignore(REPO / ".dockerignore")) is ignored


def test_runner_key_follows_the_build_context(
    repo: Path, runner: FakeRunner, tmp_path: Path
) -> None:
    def build() -> str:
        builder = make_builder(tmp_path, runner, repo=repo)
        return builder.runner_image().key

    first = build()
    (repo / "tests" / "x.py").write_text("x = 2\n")  # outside the context
    (repo / "operator" / "migrategate" / "__pycache__").mkdir(exist_ok=True)
    (repo / "operator" / "migrategate" / "__pycache__" / "y.pyc").write_bytes(b"\0")  # ignored
    assert build() == first
    for rel in ("image/Dockerfile", "operator/migrategate/__init__.py", "pyproject.toml"):
        path = repo / rel
        original = path.read_text()
        path.write_text(original + "\n# changed\n")
        assert build() != first, rel
        path.write_text(original)
    assert build() == first


# --- names ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "normalized"),
    [
        ("busybox", "docker.io/library/busybox:latest"),
        ("busybox:1.36", "docker.io/library/busybox:1.36"),
        ("library/busybox", "docker.io/library/busybox:latest"),
        ("someone/app:2", "docker.io/someone/app:2"),
        ("index.docker.io/someone/app", "docker.io/someone/app:latest"),
        ("localhost/migrategate:ab12", "localhost/migrategate:ab12"),
        ("localhost/busybox", "localhost/busybox:latest"),
        ("localhost:5000/x/y:1", "localhost:5000/x/y:1"),
        ("registry.example/x", "registry.example/x:latest"),
        ("busybox@sha256:" + "0" * 64, "docker.io/library/busybox@sha256:" + "0" * 64),
    ],
)
def test_normalize_reference_as_cri_does(name: str, normalized: str) -> None:
    assert ib.normalize_reference(name) == normalized


def test_names_carry_their_key(builder: ImageBuilder) -> None:
    base = builder.pybase()
    assert base.name == f"localhost/migrategate-pybase:{base.key}"
    assert base.archive == builder.cache / f"pybase-{base.key}.oci.tar"
    app = builder.app_image("seed004_ini_url", "v2-broken", "named-user")
    assert app.name == f"localhost/migrategate-app:seed004_ini_url-v2-broken-named-user-{app.key}"
    assert builder.runner_image().name.startswith("localhost/migrategate:")


# --- the Debian mirror ----------------------------------------------------------------------------


def test_mirror_from_deb822_sources(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\n# a comment\nURIs: http://mirror.example/debian\n"
        "Suites: bookworm bookworm-updates\nComponents: main\n\n"
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n"
    )
    (tmp_path / "sources.list.d" / "other.list.disabled").write_text(
        "deb http://no/ bookworm main\n"
    )
    assert ib.debian_mirror("bookworm", tmp_path) == "http://mirror.example/debian"


def test_mirror_from_one_line_sources_with_options(tmp_path: Path) -> None:
    (tmp_path / "sources.list").write_text(
        "# deb http://commented/ bookworm main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian bookworm main\n"
    )
    assert ib.debian_mirror("bookworm", tmp_path) == "http://mirror.example/debian"
    assert ib.debian_mirror("trixie", tmp_path) == ib.FALLBACK_MIRROR


# --- builds and the cache ----------------------------------------------------------------------


def test_a_cache_hit_runs_no_command(builder: ImageBuilder, runner: FakeRunner) -> None:
    first = [
        builder.runner_image(),
        builder.app_image("seed000_env_sync_url", "v1"),
        builder.busybox(),
    ]
    assert "bud" in runner.verbs() and "mmdebstrap" in runner.verbs()
    runner.calls.clear()
    again = make_builder(builder.cache.parent, runner)
    assert again.runner_image() == first[0]
    assert again.app_image("seed000_env_sync_url", "v1") == first[1]
    assert again.busybox() == first[2]
    assert runner.calls == []  # not even a look at the parents in buildah's storage


def test_a_changed_input_builds_again(builder: ImageBuilder, runner: FakeRunner) -> None:
    v1 = builder.app_image("seed004_ini_url", "v1")
    runner.calls.clear()
    v2 = builder.app_image("seed004_ini_url", "v2")
    assert v2.key != v1.key and runner.buildah("commit")
    patched = builder.app_image("seed004_ini_url", "v1", files={"app/db/base.py": "x = 1\n"})
    assert patched.key != v1.key
    assert builder.app_image("seed004_ini_url", "v1", "root").key == v1.key


def test_every_working_container_is_removed_and_nothing_is_pulled(
    builder: ImageBuilder, runner: FakeRunner
) -> None:
    builder.runner_image()
    builder.busybox()
    for flavour in ib.FLAVOURS:
        builder.app_image("seed001_async_settings", "v3", flavour)
    created = [c for c in runner.calls if c[:2] == ["buildah", "from"]]
    removed = {c[2] for c in runner.buildah("rm")}
    assert len(removed) == len(created) == runner.containers
    assert all("--pull=never" in c for c in created + runner.buildah("bud"))
    assert not runner.buildah("pull")  # the parents were in storage
    for step in runner.buildah("run") + runner.buildah("bud"):
        assert step[step.index("--network") + 1] == "host", step
        assert step[step.index("--runtime") + 1] == "/usr/bin/runc", step


def test_a_parent_missing_from_storage_is_loaded_from_its_archive(tmp_path: Path) -> None:
    runner = FakeRunner()
    builder = make_builder(tmp_path, runner)
    base = builder.app_base("sqla2")
    runner.calls.clear()
    runner.fail_on = "inspect"  # e.g. the cache was restored, /var/lib/containers was not
    builder.app_image("seed004_ini_url", "v1")
    pull, tag = runner.buildah("pull")[0], runner.buildah("tag")[0]
    assert pull[-1] == f"oci-archive:{base.archive}"  # a local file, not a registry
    assert tag[-1] == base.name
    assert runner.buildah("from")[0][-1] == base.name


def test_prune_keeps_what_current_inputs_name(builder: ImageBuilder, runner: FakeRunner) -> None:
    kept = [builder.runner_image(), builder.app_image("seed001_async_settings", "v2", "sqla14")]
    stale_archive = builder.archive_path("migrategate", "0" * 16)
    stale_archive.write_bytes(b"old")
    stale_log = builder.log_path("migrategate", "0" * 16)
    stale_log.parent.mkdir(parents=True, exist_ok=True)
    stale_log.write_text("old")
    (builder.cache / "logs" / "ctr-import.log").write_text("kept")
    runner.listed = [
        builder.pybase().name,
        "localhost/migrategate-pybase:" + "1" * 16,
        "localhost/other:1",
    ]
    removed = builder.prune()
    assert sorted(removed) == sorted(
        [stale_archive.name, stale_log.name, "localhost/migrategate-pybase:" + "1" * 16]
    )
    assert all(image.archive.exists() for image in kept)
    assert builder._rootfs_path().exists()
    assert (builder.cache / "logs" / "ctr-import.log").exists()
    assert [c[-1] for c in runner.buildah("rmi")][-1] == "localhost/migrategate-pybase:" + "1" * 16


def test_a_failed_step_still_removes_its_container(tmp_path: Path) -> None:
    runner = FakeRunner(fail_on="config")
    builder = make_builder(tmp_path, runner)
    with pytest.raises(BuildError, match="config failed"):
        builder.pybase()
    assert [c[2] for c in runner.buildah("rm")] == ["working-container-1"]
    assert not list((tmp_path / "cache").glob("*.oci.tar"))


def test_flavours_set_the_user_the_stack_and_the_workdir(
    builder: ImageBuilder, runner: FakeRunner
) -> None:
    builder.app_image("seed002_async_engine_wrap", "v1", "named-user")
    copy, config = runner.buildah("copy")[-1], runner.buildah("config")[-1]
    assert copy[2:4] == ["--chown", "app:app"] and copy[-1] == "/app"
    assert config[2:6] == ["--workingdir", "/app", "--user", "app"]
    builder.app_image("seed002_async_engine_wrap", "v1", "asyncpg-only")
    copy, config = runner.buildah("copy")[-1], runner.buildah("config")[-1]
    assert "--chown" not in copy and "--user" not in config
    installs = [c for c in runner.buildah("run") if "install" in c]
    assert not any("psycopg" in arg for arg in installs[-1]), installs[-1]
    assert "SQLAlchemy[asyncio]>=1.4,<2" in ib.STACKS["sqla14"]
    with pytest.raises(ValueError, match="unknown flavour"):
        builder.app_image("seed002_async_engine_wrap", "v1", "nobody")


def test_the_app_layer_holds_the_materialized_sample(tmp_path: Path) -> None:
    files = {"app/extra.py": "EXTRA = 1\n"}
    project = ib.materialize_project("seed003_settings_sync_property", "v3", tmp_path / "a", files)
    assert (project / "alembic.ini").is_file() and (project / "app" / "extra.py").is_file()
    revisions = {p.name for p in samples.versions_dir(project).glob("*.py")}
    expected = {p.name for v in ("v1", "v2", "v3") for p in samples.VARIANTS_DIR.glob(f"{v}/*.py")}
    assert revisions == expected
    # World-readable: the pod may run as any uid.
    assert all(
        p.stat().st_mode & 0o005 == (0o005 if p.is_dir() else 0o004) for p in project.rglob("*")
    )


# --- busybox and import ---------------------------------------------------------------


def test_busybox_rootfs_has_links_tmp_and_nobody() -> None:
    data = ib.busybox_rootfs(b"ELF", ["bin/sh", "usr/bin/env", "bin/busybox"])
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert members["bin/sh"].issym() and members["bin/sh"].linkname == "/bin/busybox"
        assert members["usr/bin/env"].linkname == "/bin/busybox"
        assert members["bin/busybox"].isfile() and members["bin/busybox"].mode == 0o755
        assert members["tmp"].mode == 0o1777
        passwd = tar.extractfile("etc/passwd")
        assert passwd and b"nobody:x:65534" in passwd.read()
        assert all(m.uid == 0 and m.gid == 0 for m in members.values())


def test_import_names_the_image_as_cri_looks_it_up(tmp_path: Path, runner: FakeRunner) -> None:
    archive = tmp_path / "x.oci.tar"
    name = ib.import_into_containerd(
        archive, "busybox", "/bin/ctr", "/run/c.sock", run=runner, log=tmp_path / "log"
    )
    assert name == "docker.io/library/busybox:latest"
    assert runner.calls == [
        [
            "/bin/ctr",
            "--address",
            "/run/c.sock",
            "--namespace",
            "k8s.io",
            "images",
            "import",
            "--index-name",
            name,
            "--label",
            "io.cri-containerd.pinned=pinned",
            str(archive),
        ]
    ]


def test_run_command_fails_with_one_line_and_the_log_tail(tmp_path: Path) -> None:
    log = tmp_path / "log"
    with pytest.raises(BuildError) as caught:
        ib.run_command(["sh", "-c", "echo starting; echo 'E: no such package' >&2; exit 3"], log)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("sh failed (exit 3): ") and "E: no such package" in message
    assert ib.run_command(["sh", "-c", "echo out"], log) == "out\n"

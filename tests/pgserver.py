"""A throwaway PostgreSQL 15 server for tests: initdb + pg_ctl in a temp dir, on a free port.

Shared by the runner's postgres tests and the operator's cluster tests. It never
touches a system service. As root, initdb refuses to run, so the server runs as
an unprivileged user (``nobody``) through ``runuser``.

Use it as a context manager::

    with running_server() as pg:
        db = pg.create_database()
        url = pg.url(db)                       # postgresql+asyncpg://app:...@127.0.0.1:port/db
        pg.stop(); ...; pg.start()             # simulate "database down"

or through the ``pg_server`` / ``pg_database`` pytest fixtures in tests/postgres/conftest.py.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg import sql

PG_BIN = Path(os.environ.get("MIGRATEGATE_PG_BIN", "/usr/lib/postgresql/15/bin"))
RUN_AS = "nobody"  # initdb refuses root; any unprivileged account works

# The application role every test database is owned by. Tests assert this
# password never shows up in any output.
APP_USER = "app_user"
APP_PASSWORD = "mg-Secret-7Zq9x"
# A second role whose password must be percent-encoded in a URL (@ : / % ? # & space).
# Seeds 001 and 003 pass the raw URL to config.set_main_option, which cannot take
# a '%' (plain `alembic upgrade` fails the same way), so use it with the others.
SPECIAL_USER = "app_special"
SPECIAL_PASSWORD = "p@ss:w/rd%?#& x-9Q"

# Durability off: these databases are thrown away, and the tests run on a loaded machine.
FAST_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    # A failed test's report shows the server log: did the client's connection arrive?
    "log_connections": "on",
}


def free_port() -> int:
    """Return a TCP port that is free right now on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_server_user() -> list[str]:
    """Command prefix that runs the server binaries as an unprivileged user when we are root."""
    if os.geteuid() != 0:
        return []
    return ["runuser", "-u", RUN_AS, "--"]


@dataclass
class PgServer:
    """One PostgreSQL server process and its data directory."""

    base_dir: Path
    port: int = field(default_factory=free_port)
    superuser: str = "postgres"
    superuser_password: str = field(default_factory=lambda: secrets.token_hex(12))
    host: str = "127.0.0.1"
    # A network (CIDR) allowed to log in besides loopback: the pods', for cluster tests.
    clients: str | None = None

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def socket_dir(self) -> Path:
        """Directory of the server's unix socket (usable as ``?host=`` in a URL)."""
        return self.base_dir / "socket"

    def init(self) -> None:
        """Create the cluster (initdb) with password auth over TCP and trust on the socket."""
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        pwfile = self.base_dir / "pwfile"
        pwfile.write_text(self.superuser_password + "\n")
        if os.geteuid() == 0:
            shutil.chown(self.base_dir, RUN_AS)
            shutil.chown(self.socket_dir, RUN_AS)
            shutil.chown(pwfile, RUN_AS)
        cmd = [
            *_as_server_user(),
            str(PG_BIN / "initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            self.superuser,
            f"--pwfile={pwfile}",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--no-sync",
        ]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:  # e.g. base_dir under a directory the server user cannot enter
            raise RuntimeError(f"initdb failed in {self.base_dir}: {done.stderr.strip()}")
        pwfile.unlink()
        settings = {**FAST_SETTINGS, "listen_addresses": ",".join({"127.0.0.1", self.host})}
        conf = "".join(f"{k} = '{v}'\n" for k, v in settings.items())
        conf += f"port = {self.port}\nunix_socket_directories = '{self.socket_dir}'\n"
        with open(self.data_dir / "postgresql.conf", "a") as f:
            f.write(conf)
        if self.clients:  # e.g. the pod network, besides initdb's loopback entries
            with open(self.data_dir / "pg_hba.conf", "a") as f:
                f.write(f"host all all {self.clients} scram-sha-256\n")

    def start(self, timeout: float = 60.0) -> None:
        """Start the server and wait until it accepts connections."""
        log = self.base_dir / "server.log"
        cmd = [*_as_server_user(), str(PG_BIN / "pg_ctl"), "-D", str(self.data_dir)]
        cmd += ["-l", str(log), "-w", "-t", str(int(timeout)), "start"]
        subprocess.run(cmd, check=True, capture_output=True)
        self._wait_ready(timeout)

    def log_tail(self, lines: int = 60) -> str:
        """The end of the server's log (connections are logged)."""
        log = self.base_dir / "server.log"
        return (
            "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else ""
        )

    def stop(self) -> None:
        """Stop the server (fast shutdown: open sessions are terminated)."""
        cmd = [*_as_server_user(), str(PG_BIN / "pg_ctl"), "-D", str(self.data_dir)]
        cmd += ["-m", "fast", "-w", "stop"]
        subprocess.run(cmd, check=False, capture_output=True)

    def restart(self) -> None:
        """Stop, then start again on the same port."""
        self.stop()
        self.start()

    def is_running(self) -> bool:
        """True when the server accepts connections."""
        try:
            with self.admin_connection("postgres", connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.is_running():
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not start; see {self.base_dir / 'server.log'}")
            time.sleep(0.1)

    def admin_connection(self, dbname: str = "postgres", connect_timeout: int = 10):
        """A psycopg connection as superuser in autocommit mode (use as a context manager)."""
        return self.connection(dbname, self.superuser, self.superuser_password, connect_timeout)

    def connection(
        self,
        dbname: str,
        user: str = APP_USER,
        password: str = APP_PASSWORD,
        connect_timeout: int = 10,
    ):
        """A psycopg autocommit connection, by default as the application's role."""
        return psycopg.connect(
            host=self.host,
            port=self.port,
            user=user,
            password=password,
            dbname=dbname,
            autocommit=True,
            connect_timeout=connect_timeout,
        )

    def execute(self, sql: str, dbname: str = "postgres") -> list[tuple]:
        """Run one statement as superuser; return its rows (empty when it returns none)."""
        with self.admin_connection(dbname) as conn:
            cur = conn.execute(sql)
            return list(cur.fetchall()) if cur.description else []

    def ensure_role(self, user: str = APP_USER, password: str = APP_PASSWORD) -> None:
        """Create (or reset the password of) a login role."""
        with self.admin_connection() as conn:
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,)).fetchone()
            verb = "ALTER" if exists else "CREATE"
            conn.execute(
                sql.SQL("{} ROLE {} LOGIN PASSWORD {}").format(
                    sql.SQL(verb), sql.Identifier(user), sql.Literal(password)
                )
            )

    def create_database(self, name: str | None = None, owner: str = APP_USER) -> str:
        """Create a fresh, empty database owned by ``owner``; return its name."""
        name = name or "db_" + secrets.token_hex(6)
        with self.admin_connection() as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(name), sql.Identifier(owner)
                )
            )
        return name

    def drop_database(self, name: str) -> None:
        """Drop a database, terminating its sessions first."""
        with self.admin_connection() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    @property
    def pod_address(self) -> tuple[str, int]:
        """Where pods reach the server; here the same address as the test process."""
        return self.host, self.port

    def url(
        self,
        dbname: str,
        user: str = APP_USER,
        password: str = APP_PASSWORD,
        driver: str = "postgresql+asyncpg",
    ) -> str:
        """The URL an application would get from its Secret (password percent-encoded)."""
        return _url(*self.pod_address, dbname, user, password, driver)

    def local_url(self, dbname: str) -> str:
        """The application's URL for a client in the test process (the same as ``url`` unless
        pods reach the server elsewhere, as an external one in kubeharness.external)."""
        return _url(self.host, self.port, dbname, APP_USER, APP_PASSWORD, "postgresql+asyncpg")

    def destroy(self) -> None:
        """Stop the server and remove its directory."""
        self.stop()
        shutil.rmtree(self.base_dir, ignore_errors=True)


def _url(host: str, port: int, dbname: str, user: str, password: str, driver: str) -> str:
    credentials = f"{quote(user, safe='')}:{quote(password, safe='')}"
    return f"{driver}://{credentials}@{host}:{port}/{dbname}"


def reachable_by_server_user(path: Path) -> bool:
    """True if the server's user can reach ``path`` (every existing parent is o+x)."""
    if os.geteuid() != 0:
        return True
    for parent in Path(path).resolve().parents:
        if parent.exists() and not parent.stat().st_mode & 0o001:
            return False
    return True


@contextlib.contextmanager
def running_server(
    base_dir: Path | None = None, host: str = "127.0.0.1", clients: str | None = None
) -> Iterator[PgServer]:
    """Start a throwaway server with the application roles; stop and delete it afterwards.

    ``host`` is where it listens besides loopback and what its URLs name (for pods:
    the bridge's gateway address); ``clients`` a network allowed in besides loopback.

    ``base_dir`` is used when the unprivileged server user can reach it; otherwise
    (as root under pytest's private tmp dirs) a fresh /tmp/migrategate-pg-* is.
    """
    root = Path(base_dir) if base_dir else None
    if root is None or not reachable_by_server_user(root):
        # e.g. pytest's tmp_path_factory: /tmp/pytest-of-root is 0700, closed to `nobody`
        root = Path(tempfile.mkdtemp(prefix="migrategate-pg-"))
    server = PgServer(base_dir=root, host=host, clients=clients)
    try:
        server.init()
        server.start()
        server.ensure_role(APP_USER, APP_PASSWORD)
        server.ensure_role(SPECIAL_USER, SPECIAL_PASSWORD)
        yield server
    finally:
        server.destroy()


def _main() -> None:
    """Run a server in the foreground for manual poking: ``python tests/pgserver.py``."""
    with running_server() as pg:
        print(f"PostgreSQL on {pg.host}:{pg.port}, superuser {pg.superuser}; Ctrl-C stops it")
        db = pg.create_database("demo")
        print(f"application database {db!r}, role {APP_USER}")
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(1)


if __name__ == "__main__":
    _main()

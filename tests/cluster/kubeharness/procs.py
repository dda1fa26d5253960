"""Start processes in their own process groups and make sure none outlives us.

Every process the harness starts is recorded (pid, process group, start time)
in a ledger file, so teardown, and a test looking at a crashed run, can prove
that nothing is left. Control-plane processes also get PR_SET_PDEATHSIG, so a
SIGKILLed pytest still takes them down.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """preexec_fn: the kernel sends SIGKILL to us when our parent thread exits."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def start_time(pid: int) -> int | None:
    """Process start time in clock ticks since boot (tells a pid from its reuse)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22; the command name (field 2) may hold spaces, so split after ")".
    return int(stat.rsplit(")", 1)[1].split()[19])


def pgid_members(pgid: int) -> list[int]:
    """Live (non-zombie) pids whose process group is ``pgid``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            found.append(int(entry))
    return found


@dataclass(frozen=True)
class Entry:
    pid: int
    start: int


class Ledger:
    """Append-only record of the process groups we started (one per line)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.touch()

    def record(self, pid: int) -> None:
        with self.path.open("a") as f:
            f.write(f"{pid} {start_time(pid) or 0}\n")

    def entries(self) -> list[Entry]:
        out = []
        for line in self.path.read_text().split("\n"):
            if line.strip():
                pid, start = line.split()
                out.append(Entry(int(pid), int(start)))
        return out

    def survivors(self) -> list[int]:
        """Pids still alive that we started, or that live in a group we started."""
        alive = []
        for e in self.entries():
            if start_time(e.pid) == e.start:
                alive.append(e.pid)
            alive.extend(p for p in pgid_members(e.pid) if p != e.pid)
        return sorted(set(alive))


def popen(
    argv: list[str], ledger: Ledger, log: Path, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start a process as the leader of a new process group, logging to ``log``."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,
            cwd=cwd,
            env=env,
        )
    ledger.record(proc.pid)
    return proc


def kill_group(pgid: int, grace: float) -> None:
    """SIGTERM a process group, then SIGKILL whatever is left after ``grace`` s."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not pgid_members(pgid):  # zombies don't count: their parent reaps them
                return
            time.sleep(0.05)

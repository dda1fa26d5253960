"""Peering with several replicas: kopf's own peering decision, fed our settings.

kopf pauses a replica that sees a live peer of higher or equal priority. These tests run
kopf's peering event processor (no API calls: no dead peers are cleaned, no sleep until
expiry) on a peering object holding the replicas' keep-alives, as the real ones write them.
"""

import asyncio
from datetime import UTC, datetime, timedelta

import kopf
import pytest
from kopf._cogs.aiokits import aiotoggles
from kopf._cogs.structs import references
from kopf._core.engines import peering
from migrategate.controller.cli import peering_priority, run_options
from migrategate.controller.handlers.lifecycle import tune
from migrategate.controller.settings import Settings

NAME = "migrategate"
RESOURCE = references.Resource(group="kopf.dev", version="v1", plural="clusterkopfpeerings")
T = datetime(2026, 1, 1, tzinfo=UTC).timestamp()  # a replica's start, epoch seconds


def keepalive(priority: int, lifetime: int, seen: datetime) -> dict:
    return {"priority": priority, "lifetime": lifetime, "lastseen": seen.isoformat()}


def paused(me: str, ours: Settings, priority: int, peers: dict) -> bool:
    """Whether replica `me` pauses on seeing this peering object's status."""
    settings = kopf.OperatorSettings()
    tune(settings, ours)
    settings.peering.name = ours.peering
    settings.peering.priority = priority

    async def decide() -> bool:
        toggle = aiotoggles.Toggle(True)  # peering is mandatory: paused until told otherwise
        awake = asyncio.Event()
        awake.set()  # do not sleep until a blocking peer expires
        await peering.process_peering_event(
            raw_event={"type": "MODIFIED", "object": {"metadata": {"name": NAME}, "status": peers}},
            namespace=None,
            resource=RESOURCE,
            identity=peering.Identity(me),
            settings=settings,
            autoclean=False,
            stream_pressure=awake,
            conflicts_found=toggle,
        )
        return toggle.is_on()

    return asyncio.run(decide())


def replicas(ours: Settings, *starts: float) -> dict[str, int]:
    return {f"op-{i}": run_options(ours, started=s)["priority"] for i, s in enumerate(starts)}


def test_kopfs_default_equal_priorities_pause_every_replica():
    """Why the priorities: with kopf's default (0 for all), `replicas: 2` served nothing."""
    ours = Settings(peering=NAME)
    now = datetime.now(UTC)
    peers = {op: keepalive(0, 60, now) for op in ("op-0", "op-1")}
    assert [paused(op, ours, 0, peers) for op in peers] == [True, True]


def test_exactly_one_of_two_replicas_serves_the_oldest():
    ours = Settings(peering=NAME)
    prio = replicas(ours, T, T + 0.5)
    now = datetime.now(UTC)
    peers = {op: keepalive(p, ours.peering_lifetime, now) for op, p in prio.items()}
    assert [paused(op, ours, p, peers) for op, p in prio.items()] == [False, True]


def test_replicas_started_in_the_same_millisecond_still_differ():
    ours = Settings(peering=NAME)
    assert peering_priority(ours, T, tiebreak=1) != peering_priority(ours, T, tiebreak=2)
    assert peering_priority(ours, T, tiebreak=999) > peering_priority(ours, T + 0.001, tiebreak=0)


def test_a_replica_that_died_silently_is_taken_over_after_its_lifetime():
    ours = Settings(peering=NAME)
    prio = replicas(ours, T, T + 60)
    now = datetime.now(UTC)
    lifetime = ours.peering_lifetime
    for silent, waits in ((lifetime - 2, True), (lifetime + 1, False)):
        peers = {
            "op-0": keepalive(prio["op-0"], lifetime, now - timedelta(seconds=silent)),
            "op-1": keepalive(prio["op-1"], lifetime, now),
        }
        assert paused("op-1", ours, prio["op-1"], peers) is waits, silent


def test_a_replica_that_stopped_cleanly_is_taken_over_at_once():
    # On SIGTERM kopf removes its own keep-alive: the peering object holds only the others.
    ours = Settings(peering=NAME)
    prio = replicas(ours, T, T + 60)
    peers = {"op-1": keepalive(prio["op-1"], ours.peering_lifetime, datetime.now(UTC))}
    assert paused("op-1", ours, prio["op-1"], peers) is False


def test_a_fixed_priority_wins_over_every_replica():
    debug = Settings(peering=NAME, peering_priority="0")
    deployed = Settings(peering=NAME)
    now = datetime.now(UTC)
    mine = run_options(debug)["priority"]
    theirs = run_options(deployed)["priority"]
    peers = {"me": keepalive(mine, 15, now), "op-0": keepalive(theirs, 15, now)}
    assert (mine, paused("me", debug, mine, peers)) == (0, False)
    assert paused("op-0", deployed, theirs, peers) is True


def test_the_lifetime_reaches_kopf_and_bad_values_fail_fast():
    settings = kopf.OperatorSettings()
    tune(settings, Settings.from_env({"MIGRATEGATE_PEERING_LIFETIME": "20"}))
    assert settings.peering.lifetime == 20
    tune(settings, Settings())
    assert settings.peering.lifetime == 15
    for raw in ("5", "fifteen"):
        with pytest.raises(ValueError, match="MIGRATEGATE_PEERING_LIFETIME"):
            Settings.from_env({"MIGRATEGATE_PEERING_LIFETIME": raw})
    with pytest.raises(ValueError, match="MIGRATEGATE_PEERING_PRIORITY"):
        Settings.from_env({"MIGRATEGATE_PEERING_PRIORITY": "high"})
    assert Settings.from_env({"MIGRATEGATE_PEERING_PRIORITY": "-3"}).peering_priority == "-3"


def test_identity_needs_no_passwd_entry(monkeypatch) -> None:
    """The image runs as a numeric user with no passwd entry; kopf's default identity
    (getpass.getuser) raised KeyError there and the operator pod crash-looped."""
    import pwd

    def no_entry(uid: int) -> pwd.struct_passwd:
        raise KeyError(f"getpwuid(): uid not found: {uid}")

    monkeypatch.setattr(pwd, "getpwuid", no_entry)
    for var in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        monkeypatch.delenv(var, raising=False)
    identity = run_options(Settings(peering="migrategate"))["identity"]
    assert identity and "/" in identity

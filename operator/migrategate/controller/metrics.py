"""Prometheus metrics of the operator, in one registry served on /metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

REGISTRY = CollectorRegistry(auto_describe=True)

MIGRATIONS = Counter(
    "migrategate_migrations_total",
    "Finished migration attempts, by outcome (succeeded, transient, permanent).",
    ["outcome"],
    registry=REGISTRY,
)
MIGRATION_DURATION = Histogram(
    "migrategate_migration_duration_seconds",
    "Runner-reported duration of finished migration attempts.",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800),
    registry=REGISTRY,
)
JOBS_CREATED = Counter(
    "migrategate_jobs_created_total", "Migration Jobs created.", registry=REGISTRY
)
RECONCILES = Counter(
    "migrategate_reconciles_total",
    "Reconciles of DatabaseMigrations, by result (ok, error).",
    ["result"],
    registry=REGISTRY,
)
# For the rollout gate: pods held behind the scheduling gate, and how long they waited.
GATED_PODS = Gauge(
    "migrategate_gated_pods", "Pods currently held by the migration gate.", registry=REGISTRY
)
GATE_WAIT = Histogram(
    "migrategate_gate_wait_seconds",
    "Time from pod creation to the gate's release.",
    buckets=(0.1, 0.5, 1, 5, 15, 30, 60, 300, 900, 3600),
    registry=REGISTRY,
)


def record_outcome(outcome: str, duration: float | None) -> None:
    MIGRATIONS.labels(outcome=outcome).inc()
    if duration is not None:
        MIGRATION_DURATION.observe(duration)


def serve(port: int, addr: str = "0.0.0.0") -> None:
    """Serve /metrics in a background thread (port 0 disables it)."""
    if port:
        start_http_server(port, addr=addr, registry=REGISTRY)

"""The operator's settings: one object, each field read from one environment variable.

Read at startup (never at import), and a bad value fails fast with the
variable's name. Tests override fields here instead of special-casing code.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import pydantic

import migrategate
from migrategate.api.models import JobSpec
from migrategate.controller.outcome import DEFAULT_IMAGE_PULL_GRACE

DEFAULT_RUNNER_IMAGE = f"ghcr.io/migrategate/migrategate:{migrategate.__version__}"


def setting(
    default: Any, env: str, help: str, check: Callable[[Any], str | None] | None = None
) -> Any:
    """A Settings field read from `env`; `check` (value -> problem or None) runs at start-up."""
    metadata: dict[str, Any] = {"env": env, "help": help}
    if check is not None:
        metadata["check"] = check
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class Settings:
    """Operator settings; `env` in each field's metadata names its variable."""

    runner_image: str = setting(
        DEFAULT_RUNNER_IMAGE, "MIGRATEGATE_RUNNER_IMAGE", "Image holding the runner payload."
    )
    runner_image_pull_policy: str = setting(
        "IfNotPresent", "MIGRATEGATE_RUNNER_IMAGE_PULL_POLICY", "Its pull policy."
    )
    namespaces: tuple[str, ...] = setting(
        (),
        "MIGRATEGATE_NAMESPACES",
        "Comma-separated namespaces to watch; empty means the whole cluster.",
    )
    peering: str = setting(
        "",
        "MIGRATEGATE_PEERING",
        "kopf peering name; set it when running more than one replica: exactly "
        "one serves, the others wait. Empty runs standalone.",
    )
    peering_lifetime: int = setting(
        15,
        "MIGRATEGATE_PEERING_LIFETIME",
        "Seconds a replica's peering keep-alive stays valid; it is renewed every "
        "lifetime - 5..10 s. A replica that dies without saying so (SIGKILL, lost node) "
        "is taken over after at most this long. At least 10.",
        check=lambda v: None if v >= 10 else "must be at least 10 (seconds)",
    )
    peering_priority: str = setting(
        "",
        "MIGRATEGATE_PEERING_PRIORITY",
        "kopf peering priority. Empty: derived from the start time, so the oldest "
        "live replica serves and a new one never preempts it (all auto priorities are "
        "negative). An integer: fixed; give it to one operator only, e.g. 1 to take "
        "over from the deployed replicas for debugging (equal priorities pause both).",
        check=lambda v: None if v == "" or _is_int(v) else "must be empty or an integer",
    )
    liveness_port: int = setting(8080, "MIGRATEGATE_LIVENESS_PORT", "/healthz port; 0 disables it.")
    metrics_port: int = setting(9090, "MIGRATEGATE_METRICS_PORT", "/metrics port; 0 disables it.")
    batch_window: float = setting(
        0.01,
        "MIGRATEGATE_BATCH_WINDOW",
        "Seconds kopf waits to batch events of one object (kopf's default is 0.1).",
    )
    job_defaults: str = setting(
        "",
        "MIGRATEGATE_JOB_DEFAULTS",
        "JSON object shaped like spec.job: pod defaults for every migration Job.",
    )
    image_pull_grace: float = setting(
        DEFAULT_IMAGE_PULL_GRACE,
        "MIGRATEGATE_IMAGE_PULL_GRACE",
        "Seconds a migration pod's ErrImagePull/ImagePullBackOff may last before "
        "the migration fails (a registry hiccup clears by itself); measured from when the "
        "pod was scheduled (its init containers done, for the main container).",
        check=lambda v: None if math.isfinite(v) and v >= 0 else "must be >= 0",
    )
    log_level: str = setting("INFO", "MIGRATEGATE_LOG_LEVEL", "Python log level.")
    message_max_chars: int = setting(
        1024, "MIGRATEGATE_MESSAGE_MAX_CHARS", "Cap on status.message."
    )

    def __post_init__(self) -> None:
        """A field's `check` (value -> problem or None) fails fast, naming the variable."""
        for f in fields(self):
            check: Callable[[Any], str | None] | None = f.metadata.get("check")
            problem = check(getattr(self, f.name)) if check else None
            if problem:
                raise ValueError(f"{f.metadata['env']}: {problem}, got {getattr(self, f.name)!r}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from the environment; keyword overrides (from CLI flags) win."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f.metadata["env"])
            if raw is not None and raw != "":
                values[f.name] = _parse(f.name, f.metadata["env"], f.type, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def job_defaults(settings: Settings) -> JobSpec | None:
    """The parsed MIGRATEGATE_JOB_DEFAULTS; a bad value fails with the variable's name."""
    if not settings.job_defaults.strip():
        return None
    try:
        return JobSpec.model_validate(json.loads(settings.job_defaults))
    except (ValueError, pydantic.ValidationError) as e:
        raise ValueError(f"MIGRATEGATE_JOB_DEFAULTS: not a valid spec.job object: {e}") from e


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def _parse(name: str, var: str, kind: Any, raw: str) -> Any:
    try:
        if kind in ("int", int):
            return int(raw)
        if kind in ("float", float):
            return float(raw)
        if "tuple" in str(kind):
            return tuple(p.strip() for p in raw.split(",") if p.strip())
        return raw
    except ValueError as e:
        raise ValueError(f"{var}: bad value for {name}: {raw!r}") from e


def describe() -> str:
    """One line per setting, for --help and the docs."""
    return "\n".join(
        f"  {f.metadata['env']}: {f.metadata['help']} (default: {f.default!r})"
        for f in fields(Settings)
    )

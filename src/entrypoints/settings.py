"""Settings from ``TASKCORE_*`` environment variables, converted in one place.

Read when a process starts (never at import), validated by msgspec, and a bad
value stops start-up with a message naming the variable.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Annotated, Literal

import msgspec

from taskcore.config import CoreConfig, RetryPolicy
from taskcore.errors import ConfigurationError

PREFIX = "TASKCORE_"

Positive = Annotated[float, msgspec.Meta(gt=0)]
NonNegative = Annotated[float, msgspec.Meta(ge=0)]
Count = Annotated[int, msgspec.Meta(ge=1)]


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Every setting, named as its environment variable without the prefix."""

    database_url: str | None = None
    database_read_url: str | None = None
    redis_url: str | None = None
    redis_cluster: bool = False
    amqp_url: str | None = None
    queue_name: Annotated[str, msgspec.Meta(min_length=1)] = "taskcore.tasks"
    amqp_queue_type: Literal["classic", "quorum"] = "classic"
    cache_prefix: str = "taskcore:"
    app: str | None = None
    reverse_delay_s: NonNegative = 5.0
    worker_concurrency: Count = 128
    worker_queues: str | None = None  # comma-separated; unset: every queue of the registry
    max_body_bytes: Count = 1_048_576
    lease_s: Positive = 30.0
    task_timeout_s: Positive = 300.0
    cache_ttl_s: Positive = 60.0
    cache_active_ttl_s: Positive = 60.0
    retry_base_s: Positive = 1.0
    retry_cap_s: Positive = 300.0
    shutdown_grace_s: NonNegative = 30.0
    sweep_interval_s: Positive = 5.0
    redispatch_grace_s: Positive = 10.0
    redispatch_overdue_s: Positive = 600.0
    lost_wake_up_grace_s: Positive = 15.0
    idempotency_ttl_s: Positive = 86_400.0
    retention_s: NonNegative = 604_800.0  # finished tasks are deleted this long after; 0 keeps them
    progress_interval_s: Positive = 0.5
    rate_limit_submit_per_minute: Annotated[int, msgspec.Meta(ge=0)] = 6000
    wait_max_s: Annotated[float, msgspec.Meta(ge=0, le=60)] = 60.0
    wait_recheck_s: Positive = 5.0
    events_max_s: Positive = 3600.0
    startup_attempts: Count = 5
    startup_backoff_s: Positive = 1.0
    migrate_on_start: bool = True
    batch_linger_s: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.005
    wake_up_batch: Annotated[int, msgspec.Meta(ge=1, le=256)] = 16
    database_pool_size: Count = 10
    database_timeout_s: Positive = 5.0
    redis_timeout_s: Positive = 0.25
    amqp_timeout_s: Positive = 5.0
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "console"] | None = None  # json for api/worker, console for dev
    worker_metrics_port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 9100
    worker_stall_s: Positive = 60.0
    auth: Literal["jwt", "none"] | None = None
    jwt_secret: str | None = None
    jwt_public_key_file: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_leeway_s: NonNegative = 0.0
    # Completion webhooks (model/webhooks.py).
    webhook_secret: str | None = None  # whsec_...: signs deliveries to tasks' callback_url
    webhook_allow_private: bool = False
    webhook_timeout_s: Positive = 10.0
    webhook_concurrency: Count = 16
    webhook_retry_base_s: Positive = 5.0
    webhook_retry_window_s: Positive = 86_400.0
    # Periodic schedules (model/schedules.py): how late a firing may be and
    # still fire whatever its catch_up, and the longest a scheduler sleeps
    # (how soon it sees a schedule created elsewhere).
    schedule_grace_s: Positive = 60.0
    schedule_poll_s: Positive = 5.0
    # OpenTelemetry tracing (README "Tracing"): auto = on when the otel extra is installed.
    otel: Literal["auto", "on", "off"] = "auto"
    otel_exporter: Literal["none", "console"] = "none"

    @property
    def core(self) -> CoreConfig:
        return CoreConfig(
            lease_s=self.lease_s,
            task_timeout_s=self.task_timeout_s,
            finished_ttl_s=self.cache_ttl_s,
            active_ttl_s=self.cache_active_ttl_s,
            retry=RetryPolicy(base_s=self.retry_base_s, cap_s=self.retry_cap_s),
            sweep_interval_s=self.sweep_interval_s,
            redispatch_grace_s=self.redispatch_grace_s,
            redispatch_overdue_s=self.redispatch_overdue_s,
            lost_wake_up_grace_s=self.lost_wake_up_grace_s,
            idempotency_ttl_s=self.idempotency_ttl_s,
            retention_s=self.retention_s,
            progress_interval_s=self.progress_interval_s,
        )

    def worker_queue_names(self) -> list[str] | None:
        """The queues ``TASKCORE_WORKER_QUEUES`` names, or ``None``: every queue."""
        if not self.worker_queues:
            return None
        return list(dict.fromkeys(name.strip() for name in self.worker_queues.split(",") if name.strip()))

    def missing_services(self) -> list[str]:
        """The service URL variables a networked process still needs."""
        urls = {"DATABASE_URL": self.database_url, "REDIS_URL": self.redis_url, "AMQP_URL": self.amqp_url}
        return [PREFIX + name for name, url in urls.items() if not url]

    @property
    def embedded(self) -> bool:
        """No service configured at all: everything runs on the memory adapters."""
        return not (self.database_url or self.redis_url or self.amqp_url)


def env_name(field: str) -> str:
    return PREFIX + field.upper()


_FIELD_IN_ERROR = re.compile(r"at `\$\.(\w+)`")


def load_settings(environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Build ``Settings`` from the environment; ``overrides`` (CLI flags) win."""
    environ = os.environ if environ is None else environ
    raw: dict[str, object] = {}
    for field in Settings.__struct_fields__:
        value = environ.get(env_name(field))
        if value is not None and value != "":
            raw[field] = value
    raw.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as exc:
        message = str(exc)
        match = _FIELD_IN_ERROR.search(message)
        name = env_name(match.group(1)) if match else "a TASKCORE_ setting"
        reason = message.split(" - at ", 1)[0]
        raise ConfigurationError(f"{name}: {reason}") from exc

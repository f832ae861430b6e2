"""One typed settings object, read from the environment (per stage in .chalice/config.json).

A bad flag must stop the function at start-up with the flag's name and value in
the message: a billing system that guesses a default for a mistyped BILL_FROM
bills the wrong hours.
"""

from __future__ import annotations

import os
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

# Stripe rejects meter events older than 35 days; samples must outlive that so
# parity and re-rolls can still read them.
STRIPE_BACKDATE_SECONDS = 35 * 86400


class SettingsError(ValueError):
    """A flag or secret is missing or malformed; the message names it."""


class Settings(BaseModel):
    # A plain model over an explicit mapping (not BaseSettings) so tests pass their own
    # environment and nothing leaks in from the process.
    model_config = ConfigDict(extra="ignore", frozen=True)

    SHADOW: bool = True
    BILL_FROM: int = 0
    BUCKET_SECONDS: int = 3600
    GRACE_SECONDS: int = 600
    WORKER_ENV: str = "dev"

    TABLE_PREFIX: str = "opensandbox-billing-dev"
    ARCHIVE_BUCKET: str = ""
    SAMPLE_RETENTION_DAYS: int = Field(default=45, ge=36)

    HMAC_WINDOW_SECONDS: int = 300
    MAX_BODY_BYTES: int = 1_048_576
    MAX_BATCH_ENVELOPES: int = 1000
    MAX_INTERVAL_SECONDS: int = 3600
    # The parity route's window, in buckets (at 3600 s: a day). Every bucket costs store reads
    # (an unsettled one a Query per shard), so the bound is in buckets, not seconds: at the
    # local stage's 10 s buckets a day would be 8,640 of them.
    MAX_PARITY_BUCKETS: int = Field(default=24, ge=1, le=168)

    # A free org's first balance, in cents (CONTRACT section 10).
    FREE_TIER_SEED_CENTS: Decimal = Field(default=Decimal(500), ge=0, le=10**9, decimal_places=6)
    # Ingest marks a sample late when its bucket closes within this margin, so a
    # write in flight can never slip past the rollup's read: it must exceed the
    # API Lambda's timeout (see docs/design.md, "stragglers").
    LATE_MARGIN_SECONDS: int = 120
    # Stragglers join the late slot of their arrival (this wide); a slot is swept once closed: its end
    # plus LATE_MARGIN_SECONDS plus LATE_INDEX_LAG_SECONDS, the late index's (a GSI's) settling allowance.
    LATE_SLOT_SECONDS: int = Field(default=300, ge=1)
    LATE_INDEX_LAG_SECONDS: int = Field(default=60, ge=0)

    # Partition keys per bucket for the samples (~1,000 ticks/s each); recorded with each bucket, so a
    # change applies to buckets first written after it (docs/capacity.md says how many for a fleet).
    SAMPLE_SHARDS: int = Field(default=32, ge=1, le=1000)
    # The rollup's task queue (SQS, one message per bucket and shard, docs/design.md "Roll"); empty: the
    # run drains a queue of its own in process (the CLI, tests).
    ROLLUP_QUEUE_URL: str = ""
    # A bucket whose tasks were enqueued this long ago and is still not rolled gets them again.
    FANOUT_RETRY_SECONDS: int = Field(default=600, ge=1)
    # What the parity route's 503 asks a cell to wait once a bucket is closed but not settled yet.
    PARITY_RETRY_SECONDS: int = Field(default=60, ge=1)

    SEND_CONCURRENCY: int = Field(default=8, ge=1, le=64)
    SEND_BATCH_LIMIT: int = Field(default=5000, ge=1)
    # The send's FIFO queue (one task per customer, docs/design.md "Send"); empty: the run sends in process.
    SEND_QUEUE_URL: str = ""
    # Pending rows one coordinator run offers the workers (each run offers again what is still pending).
    SEND_ENQUEUE_LIMIT: int = Field(default=500_000, ge=1)
    # Rows per send task (one SQS message; a worker sends them one after another).
    SEND_TASK_ROWS: int = Field(default=50, ge=1, le=100)
    # Customers one send worker invocation serves at once (its batch's message groups, one thread each).
    SEND_WORKER_THREADS: int = Field(default=10, ge=1, le=10)
    # How long one send worker invocation may spend before it hands back what it did not finish.
    SEND_WORKER_BUDGET_SECONDS: int = Field(default=90, ge=1)
    # False in every region but the home region of a global-tables deployment: there the
    # rollup and parity's settling (conditional writes) must not run (docs/deploy.md).
    HOME_REGION: bool = True
    # The first run (no cursor yet) rolls this many closed buckets back; later runs continue from the cursor.
    ROLLUP_LOOKBACK_BUCKETS: int = Field(default=48, ge=1, le=24 * 35)
    SEND_BUDGET_SECONDS: int = Field(default=200, ge=1)
    # Longer than the rollup Lambda's timeout, so a crashed run's lease lapses before it could overlap.
    LEASE_SECONDS: int = Field(default=360, ge=60)

    STRIPE_API_BASE: str | None = None
    STRIPE_MAX_NETWORK_RETRIES: int = Field(default=2, ge=0, le=10)
    SECRETS_PARAMETER_PREFIX: str | None = None

    EVENT_SECRET: str | None = None
    STRIPE_API_KEY: str | None = None
    STRIPE_WEBHOOK_SECRET: str | None = None
    STRIPE_EVENTS_SECRET: str | None = None  # the event destination's (thin events: meter error reports)
    SESSION_JWT_SECRET: str | None = None

    @field_validator("SHADOW", mode="before")
    @classmethod
    def _shadow_unless_exactly_false(cls, value: object) -> bool:
        # CONTRACT 6: anything but exactly "false" keeps shadow on, " false " and "False" included (no
        # stripping, no case folding): a typo never arms billing. load_settings warns about such a value.
        if isinstance(value, bool):
            return value
        return str(value) != "false"

    @field_validator("BUCKET_SECONDS")
    @classmethod
    def _bucket_divides_day(cls, value: int) -> int:
        # Down to 10 s so the local stack can close buckets within a short demo; production uses 3600.
        if value < 10 or 86400 % value:
            raise ValueError(f"BUCKET_SECONDS={value} must be >= 10 and divide 86400")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.BILL_FROM < 0 or self.BILL_FROM % self.BUCKET_SECONDS:
            raise ValueError(
                f"BILL_FROM={self.BILL_FROM} must be a non-negative multiple of BUCKET_SECONDS={self.BUCKET_SECONDS}"
            )
        if self.GRACE_SECONDS <= self.LATE_MARGIN_SECONDS:
            raise ValueError(
                f"GRACE_SECONDS={self.GRACE_SECONDS} must exceed LATE_MARGIN_SECONDS={self.LATE_MARGIN_SECONDS}"
            )
        return self

    @property
    def stage_is_prod(self) -> bool:
        return self.WORKER_ENV == "prod"

    @property
    def sample_retention_seconds(self) -> int:
        return self.SAMPLE_RETENTION_DAYS * 86400

    def secret(
        self,
        name: Literal["EVENT_SECRET", "STRIPE_API_KEY", "STRIPE_WEBHOOK_SECRET", "STRIPE_EVENTS_SECRET",
                      "SESSION_JWT_SECRET"],
    ) -> str:
        """The secret from the environment, else from SSM under SECRETS_PARAMETER_PREFIX."""
        value = getattr(self, name)
        if value:
            return str(value)
        if self.SECRETS_PARAMETER_PREFIX:
            return _ssm_secret(self.SECRETS_PARAMETER_PREFIX + name)
        raise SettingsError(f"secret {name} is not set (env var or SSM {name} under SECRETS_PARAMETER_PREFIX)")


def _ssm_secret(parameter_name: str) -> str:
    # Powertools caches the value (5 min by default), so a warm Lambda asks SSM rarely.
    from aws_lambda_powertools.utilities import parameters

    return str(parameters.get_parameter(parameter_name, decrypt=True))


# The money flags and the values they know; anything else takes the safe side (above) and is warned about.
EXACT_FLAGS = {"SHADOW": ("true", "false")}


def inexact_flags(env: dict[str, str]) -> list[tuple[str, str]]:
    """(flag, value) for every money flag set to something but one of its exact values."""
    return [(name, env[name]) for name, known in EXACT_FLAGS.items() if name in env and env[name] not in known]


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Validate the environment; raise SettingsError naming every bad flag and its value."""
    env = dict(os.environ if environ is None else environ)
    for name, value in inexact_flags(env):
        from chalicelib.observability import logger

        logger.warning("flag_not_exact", extra={"flag": name, "value": value,
                                                "meaning": f"{name}={value!r} is not exactly one of "
                                                           f"{EXACT_FLAGS[name]}: the safe side (shadow on)"})
    try:
        return Settings.model_validate({k: v for k, v in env.items() if k in Settings.model_fields})
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "settings"
            shown = f"={env[loc]!r}" if loc in env else ""
            problems.append(f"{loc}{shown}: {err['msg']}")
        raise SettingsError("invalid settings: " + "; ".join(problems)) from None

"""`make run`'s cast: the orgs, what their sandboxes do when, and the run's own state."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sim import stack

ROOT = stack.ROOT
US = 1_000_000
CELL_SETTLE_SECONDS = 2  # the seed's drain: the allocator settles a bucket soon after it closes


@dataclass(frozen=True)
class OrgSpec:
    org_id: str
    cell_id: str
    mode: str
    plan: str
    by_webhook: bool = False  # provisioned through a signed checkout (it then has a subscription)


ORGS = (
    OrgSpec("acme", "cell-a", "legacy", "pro"),
    OrgSpec("initech", "cell-a", "unified", "pro"),
    OrgSpec("hooli", "cell-a", "legacy", "free"),
    OrgSpec("wayne", "cell-a", "unified", "pro", by_webhook=True),  # downgrades after T
    OrgSpec("globex", "cell-b", "legacy", "pro"),
    OrgSpec("umbrella", "cell-b", "unified", "pro"),
    OrgSpec("stark", "cell-b", "unified", "free"),  # upgrades through the webhook during the soak
    OrgSpec("soylent", "cell-a", "unified", "free"),  # runs out of credits in both cells (sim/cutover_free.py)
)
# (bucket index from the fleet's start, seconds into it, cell, sandbox, org, MB); 2048 MB has no tier.
STARTS = (
    (0, 0.0, "cell-a", "acme-1", "acme", 1024), (0, 0.4, "cell-a", "acme-2", "acme", 4096),
    (0, 0.8, "cell-a", "initech-1", "initech", 2048), (0, 1.2, "cell-a", "initech-2", "initech", 8192),
    (0, 1.6, "cell-a", "hooli-1", "hooli", 1024), (0, 2.0, "cell-a", "wayne-1", "wayne", 2048),
    (0, 2.4, "cell-b", "globex-1", "globex", 8192), (0, 2.8, "cell-b", "umbrella-1", "umbrella", 2048),
    (0, 3.2, "cell-b", "stark-1", "stark", 1024), (1, 3.7, "cell-b", "umbrella-2", "umbrella", 4096),
    (2, 6.1, "cell-b", "globex-2", "globex", 16384),
)
RESIZES = ((1, 3.3, "cell-a", "acme-2", 8192), (2, 5.5, "cell-b", "umbrella-1", 4096),
           (4, 7.9, "cell-a", "initech-2", 2048))
STOPS = ((3, 4.4, "cell-a", "initech-1"), (4, 2.7, "cell-b", "umbrella-2"))


@dataclass
class Run:
    info: stack.StackInfo
    bucket: int
    grace: int
    soak_buckets: int
    live_buckets: int
    customers: dict[str, str] = field(default_factory=dict)  # org -> Stripe customer
    subscriptions: dict[str, str] = field(default_factory=dict)
    cli: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    t: int = 0

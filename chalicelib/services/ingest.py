"""The ingest service: a verified batch of envelopes becomes samples, once.

Pure routing (`route_ticks`) decides, per tick, sample / free / quarantine
from the edge's org records; `ingest_batch` is the thin shell around the store.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from chalicelib.core.credits import FreeTick, free_late_cutoff, free_tick
from chalicelib.core.envelopes import Rejected, Tick, TickEnvelope, UsageTick, validate_batch
from chalicelib.core.late import slot_of
from chalicelib.core.orgs import Org
from chalicelib.core.pricing import legacy_meter
from chalicelib.core.quarantine import QuarantineItem
from chalicelib.core.samples import Sample, late_cutoff, samples_from_tick
from chalicelib.credit_ports import CreditStore
from chalicelib.observability import logger
from chalicelib.ports import OrgStore, QuarantineStore, SampleStore, StoreUnavailable
from chalicelib.settings import Settings

UNKNOWN_ORG = "unknown_org"
INVALID = "invalid"
# A quarantine item keeps at most this much of the envelope's JSON (DynamoDB items stop at
# 400 KB, a batch may carry a 1 MiB envelope) plus the whole envelope's SHA-256 and length;
# the whole batch, byte for byte, is in the raw archive (chalicelib/adapters/s3_archive.py).
MAX_QUARANTINE_RAW = 32 * 1024


class IngestStore(OrgStore, SampleStore, QuarantineStore, Protocol):
    """The roles of the billing store ingest uses (ports.py): org lookups, sample writes, the quarantine."""


@dataclass
class Routed:
    samples: list[Sample] = field(default_factory=list)
    free: list[FreeTick] = field(default_factory=list)
    pro_ticks: int = 0
    free_ticks: int = 0
    held: list[tuple[int, Tick, str]] = field(default_factory=list)  # (index, tick, reason)
    # Stored pro ticks that bill nothing (index, id, reason): said in the answer, never silent.
    unbillable: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class IngestResult:
    accepted: int
    pro: int
    free: int
    ignored: int
    samples: int
    late: int
    quarantined: list[dict[str, Any]]
    duplicates: int = 0
    unbillable: list[dict[str, Any]] = field(default_factory=list)

    def body(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "pro": self.pro,
            "free": self.free,
            "ignored": self.ignored,
            "samples": self.samples,
            "late": self.late,
            "quarantined": self.quarantined,
            "duplicates": self.duplicates,
            "unbillable": self.unbillable,
        }


def plan_of(tick: Tick, orgs: dict[str, Org] | None) -> str | None:
    """The edge's plan for the tick's org; the envelope's only when the lookup itself failed."""
    org_id = tick.envelope.org_id
    if orgs is None:
        return tick.envelope.plan
    org = orgs.get(org_id or "")
    return org.plan if org else None


def unbillable_reason(memory_mb: int, org: Org | None) -> str | None:
    """Why a stored pro tick bills nothing, if it does not: legacy orgs are billed per tier
    meter (a size without one is never sent), unified orgs by GB-seconds (0 MB is 0)."""
    if memory_mb == 0:
        return "memory_mb is 0 (absent): the tick is stored but bills 0"
    if org is not None and org.billing_mode == "legacy" and legacy_meter(memory_mb) is None:
        return f"memory_mb {memory_mb} has no legacy tier meter: stored for parity, not billed"
    return None


def route_ticks(ticks: list[tuple[int, Tick]], orgs: dict[str, Org] | None, settings: Settings, now: int) -> Routed:
    routed = Routed()
    late_after = late_cutoff(now, settings.BUCKET_SECONDS, settings.GRACE_SECONDS, settings.LATE_MARGIN_SECONDS)
    free_late_after = free_late_cutoff(now, settings.LATE_MARGIN_SECONDS)
    for index, tick in ticks:
        org_id = tick.envelope.org_id
        if not org_id:
            routed.held.append((index, tick, "usage_tick without org_id"))
            continue
        plan = plan_of(tick, orgs)
        if plan is None:
            routed.held.append((index, tick, f"org {org_id} is not known to the edge"))
        elif plan == "pro":
            routed.pro_ticks += 1
            why = unbillable_reason(tick.usage.memory_mb, orgs.get(org_id) if orgs else None)
            if why:
                routed.unbillable.append({"index": index, "id": tick.envelope.id, "reason": why})
            routed.samples.extend(
                samples_from_tick(tick, org_id, settings.BUCKET_SECONDS, settings.sample_retention_seconds, late_after)
            )
        else:
            routed.free_ticks += 1
            # Stored like a pro sample (one idempotent put); the spend pass spends it (services/credits.py).
            routed.free.append(free_tick(tick, org_id, settings.sample_retention_seconds, free_late_after))
    return routed


def _raw_json(raw: Any) -> str:
    # Decimals back to JSON numbers, so a replay parses exactly what the cell sent.
    return json.dumps(raw, default=lambda v: float(v) if v.is_finite() else str(v))


def _known_fields(raw: dict[str, Any]) -> dict[str, Any]:
    """A held tick as replay needs it: the envelope's and the payload's own fields, no extras
    (a valid tick may carry any amount of unknown fields)."""
    kept = {k: v for k, v in raw.items() if k in TickEnvelope.model_fields}
    payload = raw.get("payload")
    if isinstance(payload, dict):
        kept["payload"] = {k: v for k, v in payload.items() if k in UsageTick.model_fields}
    return kept


def _item(quarantine_id: str, kind: str, reason: str, cell_id: str, raw: Any, now: int) -> QuarantineItem:
    text = _raw_json(raw)
    if len(text) <= MAX_QUARANTINE_RAW:
        return QuarantineItem(quarantine_id, kind, reason, cell_id, text, now)
    return QuarantineItem(
        quarantine_id, kind, reason, cell_id, text[:MAX_QUARANTINE_RAW], now,
        raw_sha256=hashlib.sha256(text.encode()).hexdigest(), raw_length=len(text),
    )


def _quarantine_items(
    raw_items: list[Any], rejected: list[Rejected], held: list[tuple[int, Tick, str]], cell_id: str, now: int
) -> list[QuarantineItem]:
    items = [_item(r.quarantine_id, INVALID, r.reason, cell_id, r.raw, now) for r in rejected]
    items += [_item(t.envelope.id, UNKNOWN_ORG, why, cell_id, _known_fields(raw_items[i]), now) for i, t, why in held]
    return items


def lookup_orgs(store: OrgStore, ticks: list[tuple[int, Tick]]) -> dict[str, Org] | None:
    org_ids = {t.envelope.org_id for _, t in ticks if t.envelope.org_id}
    if not org_ids:
        return {}
    try:
        return store.get_orgs(org_ids)
    except StoreUnavailable as exc:
        logger.warning("org_lookup_failed_using_envelope_plan", extra={"orgs": len(org_ids), "error": str(exc)})
        return None


def ingest_batch(
    items: list[Any], cell_id: str, store: IngestStore, settings: Settings, now: int,
    credits: CreditStore | None = None,
) -> IngestResult:
    """Validate, route and store one batch. Raises StoreUnavailable (-> 503) if a write fails.

    `credits`: where free ticks go; None only for callers that measure the pro path alone (benches),
    where free ticks are counted in the answer and not stored."""
    validated = validate_batch(items, settings.MAX_INTERVAL_SECONDS, now, settings.sample_retention_seconds)
    orgs = lookup_orgs(store, validated.ticks)
    routed = route_ticks(validated.ticks, orgs, settings, now)
    quarantine = _quarantine_items(items, validated.rejected, routed.held, cell_id, now)
    late = store.put_samples(routed.samples, late_slot=slot_of(now, settings.LATE_SLOT_SECONDS))
    if credits is not None and routed.free:
        credits.put_free_ticks(routed.free)
    if quarantine:
        store.put_quarantine(quarantine)
        for q in quarantine:
            logger.warning(
                "envelope_quarantined",
                extra={"cell_id": cell_id, "event_id": q.quarantine_id, "kind": q.kind, "reason": q.reason},
            )
    listed = [{"index": r.index, "id": r.quarantine_id, "reason": r.reason} for r in validated.rejected]
    listed += [{"index": i, "id": t.envelope.id, "reason": reason} for i, t, reason in routed.held]
    return IngestResult(
        accepted=routed.pro_ticks + routed.free_ticks + len(validated.others),
        pro=routed.pro_ticks,
        free=routed.free_ticks,
        ignored=len(validated.others),
        samples=len(routed.samples),
        late=late,
        quarantined=sorted(listed, key=lambda q: q["index"]),
        duplicates=validated.duplicates,
        unbillable=routed.unbillable,
    )


def replay_quarantine(
    store: IngestStore, settings: Settings, now: int, credits: CreditStore | None = None
) -> dict[str, int]:
    """Re-route ticks held for an unknown org; those whose org now exists are stored and released."""
    held = list(store.quarantine(UNKNOWN_ORG))
    replayed = still_held = 0
    for item in held:
        if item.raw_sha256:  # only a prefix was kept: nothing to replay from (never for a held tick)
            still_held += 1
            continue
        envelope = json.loads(item.raw_json, parse_float=Decimal)
        result = ingest_batch([envelope], item.cell_id, store, settings, now, credits)
        if result.accepted:
            store.delete_quarantine([item.quarantine_id])
            replayed += 1
        else:
            still_held += 1
    return {"held": len(held), "replayed": replayed, "still_held": still_held}

"""An envelope the edge could not bill as it came: kept, never lost, replayable when it can be."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class QuarantineItem:
    quarantine_id: str
    kind: str  # "invalid" (the envelope is malformed) or "unknown_org" (replayable)
    reason: str
    cell_id: str
    raw_json: str
    received_at: int
    # Set when raw_json is only a prefix: the whole envelope's SHA-256 and length (it is in the raw archive).
    raw_sha256: str | None = None
    raw_length: int | None = None

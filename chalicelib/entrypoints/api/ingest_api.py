"""POST /ingest: signed batches of envelopes from the cells (CONTRACT sections 1-3)."""

from __future__ import annotations

from chalice import Response
from chalice.app import Request

from chalicelib.bootstrap import Container
from chalicelib.core.envelopes import BatchError, parse_batch
from chalicelib.core.limits import MAX_ID_LENGTH, is_printable_id
from chalicelib.entrypoints.api.http import Routes, answer, check_body_hmac, error, json_errors, lowered, raw_body
from chalicelib.observability import logger
from chalicelib.services.ingest import ingest_batch

routes = Routes(__name__)


def handle_ingest(headers: dict[str, str], body: bytes, svc: Container) -> Response:
    """The whole ingest answer for one request; split from the route so the bench can drive it."""
    cell_id = headers.get("x-cell-id", "").strip()
    if not cell_id:
        return error(400, "missing X-Cell-Id header")
    # It names the archive's S3 prefix (raw/{cell_id}/...) and every log line of the batch.
    if not is_printable_id(cell_id) or "/" in cell_id:
        return error(400, f"X-Cell-Id must be 1 to {MAX_ID_LENGTH} printable characters without '/'")
    if len(body) > svc.settings.MAX_BODY_BYTES:
        return error(413, f"body of {len(body)} bytes exceeds {svc.settings.MAX_BODY_BYTES}")
    try:
        items = parse_batch(body)
    except BatchError as exc:
        return error(400, str(exc))
    if len(items) > svc.settings.MAX_BATCH_ENVELOPES:
        return error(413, f"batch of {len(items)} envelopes exceeds {svc.settings.MAX_BATCH_ENVELOPES}")
    if not items:
        return answer(202, {"accepted": 0})
    now = svc.now()
    result = ingest_batch(items, cell_id, svc.store, svc.settings, now, svc.credits())
    archived = svc.archive.put_batch(cell_id, now, body)
    summary = result.body() | {"quarantined": len(result.quarantined), "unbillable": len(result.unbillable)}
    logger.info("batch_ingested", extra={"cell_id": cell_id, "archive_key": archived, **summary})
    return answer(202, result.body())


@routes.route("/ingest", methods=["POST"], content_types=["application/json", "text/plain", "application/octet-stream"])
@json_errors
def ingest(request: Request, svc: Container) -> Response:
    headers = lowered(request.headers)
    if "x-cell-id" not in headers:
        return error(400, "missing X-Cell-Id header")
    check_body_hmac(request, svc)
    return handle_ingest(headers, raw_body(request), svc)

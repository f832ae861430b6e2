"""What cells report (CONTRACT section 8): parity reports and cell status, HMAC-signed.

POST /internal/parity-reports      one cell's comparison of one window (a re-post replaces it)
GET  /internal/parity-reports      a cell's reports whose window starts in [from, to)
PUT  /internal/cells/{cell_id}     a cell's billing authority, billers, billed_through, backlog
GET  /internal/cells               every cell with the time it last reported
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Annotated, Any, Literal

from chalice import Response
from chalice.app import Request
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, ValidationError, model_validator

from chalicelib.bootstrap import Container
from chalicelib.core.cell_reports import CellStatus, OrgParity, ParityReport
from chalicelib.entrypoints.api.http import (
    Routes,
    answer,
    check_body_hmac,
    check_get_hmac,
    error,
    json_errors,
    lowered,
    raw_body,
    signed_query,
)
from chalicelib.services.cell_reports import (
    InconsistentReport,
    cell_statuses,
    parity_reports,
    receive_cell_status,
    receive_parity_report,
)
from chalicelib.services.parity import parse_window

routes = Routes(__name__)
REPORTS_PATH = "/internal/parity-reports"
CELLS_PATH = "/internal/cells"
CELL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
MAX_ORGS_PER_REPORT = 50_000
MAX_WINDOW_SECONDS = 7 * 86400
BODY_TYPES = ["application/json", "text/plain", "application/octet-stream"]
# Drift and tolerance are stored as DynamoDB numbers (38 significant digits, magnitudes 1e-130 to
# 1e126): a valid-looking 3e-136 or a 40-digit decimal from the JSON text would be refused by the
# store after validation passed (found by tests/fuzz/test_fuzz_cells.py). Ratios are bounded and
# rounded to 12 places, far finer than any tolerance means.
RATIO_STEP = Decimal("1e-12")
# The same for integers: a 41-digit spool depth passed validation and then failed the store's number
# serialisation (an unhandled 500; found by `make soak`). Unix seconds get 12 digits (the HMAC
# timestamp's bound), counts 15.
MAX_UNIX_SECONDS = 10**12 - 1
MAX_COUNT = 10**15
RATIO_BOUND = 10**9


_BASE_URL = re.compile(r"^https?://[A-Za-z0-9.\-\[\]:]{1,255}(/[A-Za-z0-9._~/%-]{0,200})?$")


def _base_url(value: str) -> str:
    # Only what the edge may POST to: a plain http(s) origin and path, no query, fragment or userinfo.
    if not _BASE_URL.match(value):
        raise ValueError("base_url must be http(s)://host[:port][/path], without query, fragment or credentials")
    return value.rstrip("/")


def _ratio(value: Decimal) -> Decimal:
    return value.quantize(RATIO_STEP)


Ratio = Annotated[Decimal, Field(ge=-RATIO_BOUND, le=RATIO_BOUND, allow_inf_nan=False), AfterValidator(_ratio)]


class ReportWindow(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    start: int = Field(alias="from", ge=0, le=MAX_UNIX_SECONDS, strict=True)
    end: int = Field(alias="to", ge=0, le=MAX_UNIX_SECONDS, strict=True)

    @model_validator(mode="after")
    def _ordered(self) -> ReportWindow:
        if self.end <= self.start:
            raise ValueError(f"window.to={self.end} must be greater than window.from={self.start}")
        if self.end - self.start > MAX_WINDOW_SECONDS:
            raise ValueError(f"window of {self.end - self.start}s exceeds {MAX_WINDOW_SECONDS}s")
        return self


class OrgParityBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    org_id: str = Field(min_length=1, max_length=255)
    cell_gb_seconds: Decimal = Field(ge=0, allow_inf_nan=False)
    edge_gb_seconds: Decimal = Field(ge=0, allow_inf_nan=False)
    drift: Ratio | None = None


class ParityReportBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cell_id: str = Field(pattern=CELL_ID.pattern)
    window: ReportWindow
    tolerance: Annotated[Ratio, Field(ge=0)]
    orgs: list[OrgParityBody] = Field(max_length=MAX_ORGS_PER_REPORT)
    clean: StrictBool

    @model_validator(mode="after")
    def _consistent(self) -> ParityReportBody:
        seen: set[str] = set()
        for o in self.orgs:
            if o.org_id in seen:
                raise ValueError(f"org {o.org_id} appears twice")
            seen.add(o.org_id)
        return self


class CellStatusBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    authority: Literal["cell", "edge"]
    billers_running: StrictBool
    billed_through: int = Field(ge=0, le=MAX_UNIX_SECONDS, strict=True)
    pending_billable: int = Field(ge=0, le=MAX_COUNT, strict=True)
    spool_depth: int = Field(ge=0, le=MAX_COUNT, strict=True)
    # The cell's control plane, for the edge's halt-org / resume-org pushes (CONTRACT section 10).
    base_url: Annotated[str, AfterValidator(_base_url)] | None = None


class BadBody(ValueError):
    """The body is not what the contract says (answered 400, or 413 when too large, with the reason)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def parse_body(body: bytes, model: type[BaseModel], what: str) -> Any:
    try:
        # Decimals straight from the JSON text: no binary rounding of GB-seconds on the way in.
        data = json.loads(body or b"null", parse_float=Decimal)
    except RecursionError:
        raise BadBody(f"invalid {what}: JSON nested too deeply") from None
    except ValueError as exc:
        raise BadBody(f"invalid {what}: body is not JSON ({exc})") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors())
        raise BadBody(f"invalid {what}: {problems}") from None


def signed_at(headers: dict[str, str]) -> int:
    return int(headers["x-timestamp"])  # already checked to be digits by the HMAC check


def to_report(body: ParityReportBody, signed: int, now: int) -> ParityReport:
    orgs = tuple(OrgParity(o.org_id, o.cell_gb_seconds, o.edge_gb_seconds, o.drift) for o in body.orgs)
    return ParityReport(
        body.cell_id, body.window.start, body.window.end, body.tolerance, orgs, body.clean, signed, now
    )


def report_body(r: ParityReport) -> dict[str, Any]:
    return {
        "cell_id": r.cell_id,
        "window": {"from": r.window_from, "to": r.window_to},
        "tolerance": float(r.tolerance),
        "clean": r.clean,
        "max_drift": float(r.max_drift),
        "orgs": [
            {
                "org_id": o.org_id,
                "cell_gb_seconds": float(o.cell_gb_seconds),
                "edge_gb_seconds": float(o.edge_gb_seconds),
                "drift": None if o.drift is None else float(o.drift),
            }
            for o in r.orgs
        ],
        "received_at": r.received_at,
    }


def status_body(s: CellStatus, now: int) -> dict[str, Any]:
    return {
        "cell_id": s.cell_id,
        "authority": s.authority,
        "billers_running": s.billers_running,
        "billed_through": s.billed_through,
        "pending_billable": s.pending_billable,
        "spool_depth": s.spool_depth,
        "last_reported_at": s.reported_at,
        "seconds_since_report": max(0, now - s.reported_at),
        "base_url": s.base_url,
    }


def checked_body(request: Request, svc: Container) -> tuple[dict[str, str], bytes]:
    body = raw_body(request)
    if len(body) > svc.settings.MAX_BODY_BYTES:
        raise BadBody(f"body of {len(body)} bytes exceeds {svc.settings.MAX_BODY_BYTES}", 413)
    check_body_hmac(request, svc)
    return lowered(request.headers), body


@routes.route(REPORTS_PATH, methods=["POST"], content_types=BODY_TYPES)
@json_errors
def post_parity_report(request: Request, svc: Container) -> Response:
    try:
        headers, raw = checked_body(request, svc)
        body: ParityReportBody = parse_body(raw, ParityReportBody, "parity report")
    except BadBody as exc:
        return error(exc.status, str(exc))
    report = to_report(body, signed_at(headers), svc.now())
    try:
        stored = receive_parity_report(svc.cells(), report, svc.settings.WORKER_ENV)
    except InconsistentReport as exc:
        return error(400, str(exc))
    return answer(200, {"stored": stored, "cell_id": report.cell_id,
                        "window": {"from": report.window_from, "to": report.window_to},
                        "clean": report.clean, "max_drift": float(report.max_drift)})


@routes.route(REPORTS_PATH, methods=["GET"])
@json_errors
def list_parity_reports(request: Request, svc: Container) -> Response:
    query = signed_query(request, REPORTS_PATH, svc, ("cell_id", "from", "to"))
    cell_id = query.get("cell_id", "")
    if not CELL_ID.match(cell_id):
        return error(400, "query parameter 'cell_id' is required (letters, digits, . _ : -, at most 128)")
    window = parse_window(query)
    reports = parity_reports(svc.cells(), cell_id, window.start, window.end)
    return answer(200, {"cell_id": cell_id, "window": {"from": window.start, "to": window.end},
                        "reports": [report_body(r) for r in reports], "as_of": svc.now()})


@routes.route(CELLS_PATH + "/{cell_id}", methods=["PUT"], content_types=BODY_TYPES)
@json_errors
def put_cell_status(request: Request, svc: Container, cell_id: str) -> Response:
    if not CELL_ID.match(cell_id):
        return error(400, "cell id must be letters, digits, . _ : - (at most 128)")
    try:
        headers, raw = checked_body(request, svc)
        body: CellStatusBody = parse_body(raw, CellStatusBody, "cell status")
    except BadBody as exc:
        return error(exc.status, str(exc))
    now = svc.now()
    status = CellStatus(cell_id, body.authority, body.billers_running, body.billed_through,
                        body.pending_billable, body.spool_depth, signed_at(headers), now, body.base_url)
    stored = receive_cell_status(svc.cells(), status)
    return answer(200, status_body(status, now) | {"stored": stored})


@routes.route(CELLS_PATH, methods=["GET"])
@json_errors
def list_cells(request: Request, svc: Container) -> Response:
    check_get_hmac(request, CELLS_PATH, svc)
    now = svc.now()
    cells = cell_statuses(svc.cells())
    return answer(200, {"cells": [status_body(s, now) for s in cells], "as_of": now})


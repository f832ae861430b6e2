"""The cell-side routes under generated hostile input (issue 13): parity reports and cell status.

POST/GET /internal/parity-reports, PUT /internal/cells/{id}, GET /internal/cells, signed and not.
Properties: every answer is 2xx or 4xx with a JSON "error" (503 only while a store failure is
injected); nothing unsigned reaches the store; a signed valid body is stored. CI runs a few hundred
examples per route; `make soak` runs at least 10,000 per route and prints the counts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chalicelib.adapters.memory.cells import MemoryCells
from chalicelib.bootstrap import Container
from chalicelib.core.cell_reports import CellStatus, ParityReport
from chalicelib.core.hmac_auth import sign_body, sign_get
from chalicelib.ports import CellStore, StoreUnavailable
from tests.conftest import SECRET, T0
from tests.fuzz.conftest import answered, fuzz, header_values, json_values, mostly, nasty_text, ran, raw_bodies
from tests.fuzz.test_fuzz_routes import encode_query, grouped_pairs, styles, usable

NOW = T0 + 7200
REPORTS, CELLS = "/internal/parity-reports", "/internal/cells"
SOAK = 10_000


class RecordingCells(CellStore):
    """A cell store (moto's, or the in-memory one), counting writes, failing on demand (the one allowed 5xx)."""

    def __init__(self, inner: CellStore) -> None:
        self.inner = inner
        self.failing = False
        self.writes = 0

    def _write(self) -> None:
        if self.failing:
            raise StoreUnavailable("injected")
        self.writes += 1

    def put_parity_report(self, report: ParityReport) -> bool:
        self._write()
        return self.inner.put_parity_report(report)

    def parity_reports(self, cell_id: str, window_from: int, window_to: int) -> list[ParityReport]:
        if self.failing:
            raise StoreUnavailable("injected")
        return self.inner.parity_reports(cell_id, window_from, window_to)

    def put_cell_status(self, status: CellStatus) -> bool:
        self._write()
        return self.inner.put_cell_status(status)

    def cell_statuses(self) -> list[CellStatus]:
        if self.failing:
            raise StoreUnavailable("injected")
        return self.inner.cell_statuses()


@pytest.fixture
def cells(svc: Container) -> Iterator[RecordingCells]:
    """On moto: where a signed body is stored, DynamoDB's own refusals (numbers, key sizes) are in view."""
    recording = RecordingCells(svc.cells())
    svc.cell_store = recording
    yield recording


@pytest.fixture
def memory_cells(svc: Container) -> Iterator[RecordingCells]:
    """In memory (contract-tested against DynamoCells): for the properties that refuse before storing and for
    the reads, whose soak of 10,000 examples on moto cost minutes."""
    recording = RecordingCells(MemoryCells())
    svc.cell_store = recording
    yield recording


def check(route: str, res: Any, allowed: set[int]) -> None:
    answered(route, res.status_code)
    assert res.status_code in allowed, (route, res.status_code, res.body[:300])
    if res.status_code == 403:  # API Gateway's own answer for a path no route matches (chalice local emulates it)
        assert json.loads(res.body) == {"message": "Missing Authentication Token"}
        return
    body = json.loads(res.body)
    if res.status_code >= 300:
        assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"], res.body[:300]


def send_signed(client: Any, method: str, path: str, body: bytes) -> Any:
    headers = {"Content-Type": "application/json", "X-Timestamp": str(NOW), "X-Signature": sign_body(SECRET, NOW, body)}
    return client.http.request(method, path, body=body, headers=headers)


# --- bodies ---------------------------------------------------------------------------------------

cell_ids = mostly(st.sampled_from(["cell-a", "cell-eu.1", "cell:us-2", "c" * 128]),
                  st.one_of(nasty_text, json_values, st.just("c" * 129)))
numbers = st.one_of(st.integers(0, 10**6), st.floats(0, 1e6, allow_nan=False), st.decimals(0, 10**6, places=6).map(
    str).map(float))
org_rows = st.fixed_dictionaries(
    {"org_id": mostly(st.text(min_size=1, max_size=12), json_values),
     "cell_gb_seconds": mostly(numbers, json_values), "edge_gb_seconds": mostly(numbers, json_values)},
    optional={"drift": mostly(st.one_of(st.none(), st.floats(-1, 1, allow_nan=False)), json_values)})
windows = st.integers(T0 - 86400, T0 + 86400).flatmap(lambda start: st.fixed_dictionaries(
    {"from": mostly(st.just(start), json_values),
     "to": mostly(st.sampled_from([start + 3600, start + 1, start, start - 1, start + 8 * 86400]), json_values)}))
_report = st.fixed_dictionaries({
    "cell_id": cell_ids, "window": mostly(windows, json_values),
    "tolerance": mostly(st.sampled_from([0, 0.02, 1]), json_values),
    "orgs": mostly(st.lists(org_rows, max_size=4), json_values), "clean": mostly(st.booleans(), json_values)},
    optional={"extra": json_values})
_valid_report = st.fixed_dictionaries({
    "cell_id": st.sampled_from(["cell-a", "cell-eu.1", "cell:us-2"]),
    "window": st.integers(T0 - 86400, T0 + 86400).map(lambda s: {"from": s, "to": s + 3600}),
    "tolerance": st.just(0.02),
    "orgs": st.lists(st.fixed_dictionaries({"org_id": st.text(min_size=1, max_size=12), "cell_gb_seconds": numbers,
                                            "edge_gb_seconds": numbers, "drift": st.floats(-0.01, 0.01)}),
                     max_size=4, unique_by=lambda o: o["org_id"]),
    "clean": st.just(True)})
# Half valid as a whole (so the store is reached), half with hostile fields or no shape at all.
reports = st.one_of(_valid_report, mostly(_report, json_values))
_status = st.fixed_dictionaries({
    "authority": mostly(st.sampled_from(["cell", "edge"]), json_values),
    "billers_running": mostly(st.booleans(), json_values),
    "billed_through": mostly(st.integers(0, 2 * 10**9), json_values),
    "pending_billable": mostly(st.integers(0, 10**6), json_values),
    "spool_depth": mostly(st.integers(0, 10**6), json_values)}, optional={"extra": json_values})
_valid_status = st.fixed_dictionaries({
    "authority": st.sampled_from(["cell", "edge"]), "billers_running": st.booleans(),
    "billed_through": st.integers(0, 2 * 10**9), "pending_billable": st.integers(0, 10**6),
    "spool_depth": st.integers(0, 10**6)})
statuses = st.one_of(_valid_status, mostly(_status, json_values))
# No "/?#%" (they change the path itself), no tab/CR/LF (API Gateway would answer such a path itself),
# no ";" (chalice's test client cuts the path there: found by the soak, an artefact of the client).
path_ids = st.one_of(st.sampled_from(["cell-a", "cell\u0000", "c" * 200, "é", "a b", "1e309"]),
                     st.text(min_size=1, max_size=30).filter(lambda s: not set(s) & set("/?#%;\t\r\n")))


def dumps(value: Any) -> bytes:
    try:
        return json.dumps(value).encode()
    except (ValueError, UnicodeEncodeError):
        return repr(value).encode(errors="surrogatepass")


# --- POST /internal/parity-reports ----------------------------------------------------------------


@given(body=reports)
@fuzz(150, SOAK)
def test_parity_report_signed(client: Any, cells: RecordingCells, body: Any) -> None:
    ran("parity-reports POST")
    before = cells.writes
    res = send_signed(client, "POST", REPORTS, dumps(body))
    check("parity-reports POST", res, {200, 400, 413})
    # Stored exactly when accepted: a 4xx never writes.
    assert (cells.writes > before) == (res.status_code == 200)
    if res.status_code == 200:
        assert res.json_body["cell_id"] == body["cell_id"] and res.json_body["window"] == body["window"]


@given(body=st.one_of(reports, raw_bodies))
@fuzz(40, 1000)
def test_parity_report_store_failure_is_the_only_5xx(client: Any, memory_cells: RecordingCells, body: Any) -> None:
    ran("parity-reports POST")
    memory_cells.failing = True
    try:
        res = send_signed(client, "POST", REPORTS, body if isinstance(body, bytes) else dumps(body))
    finally:
        memory_cells.failing = False
    check("parity-reports POST", res, {400, 413, 503})


# --- PUT /internal/cells/{id} --------------------------------------------------------------------


@given(cell_id=path_ids, body=statuses)
@fuzz(150, SOAK)
def test_cell_status_signed(client: Any, cells: RecordingCells, cell_id: str, body: Any) -> None:
    ran("cells PUT")
    before = cells.writes
    res = send_signed(client, "PUT", f"{CELLS}/{cell_id}", dumps(body))
    check("cells PUT", res, {200, 400, 403, 404, 413})
    assert (cells.writes > before) == (res.status_code == 200)
    if res.status_code == 200:
        assert res.json_body["cell_id"] == cell_id and res.json_body["authority"] == body["authority"]


@given(cell_id=path_ids, body=st.one_of(statuses, raw_bodies))
@fuzz(40, 1000)
def test_cell_status_store_failure_is_the_only_5xx(client: Any, memory_cells: RecordingCells, cell_id: str,
                                                   body: Any) -> None:
    ran("cells PUT")
    memory_cells.failing = True
    try:
        res = send_signed(client, "PUT", f"{CELLS}/{cell_id}", body if isinstance(body, bytes) else dumps(body))
    finally:
        memory_cells.failing = False
    check("cells PUT", res, {400, 403, 404, 413, 503})


# --- the two GETs --------------------------------------------------------------------------------

_starts = st.integers(T0 - 7200, T0 + 7200)
report_query = {"cell_id": mostly(st.sampled_from(["cell-a", "cell eu", "c" * 129]), nasty_text),
                "from": mostly(_starts.map(str), nasty_text), "to": mostly(_starts.map(lambda t: str(t + 3600)),
                                                                          nasty_text)}


@given(pairs=grouped_pairs(report_query), style=styles, extra=st.text(min_size=1, max_size=8))
@fuzz(150, SOAK)
def test_list_reports_signed_and_an_added_parameter_is_refused(client: Any, memory_cells: RecordingCells,
                                                               pairs: list[tuple[str, str]], style: str,
                                                               extra: str) -> None:
    ran("parity-reports GET")
    if not usable(pairs) or re.search(r"[\ud800-\udfff]", extra):
        return
    raw = encode_query(pairs, style)
    headers = {"X-Timestamp": str(NOW), "X-Signature": sign_get(SECRET, NOW, REPORTS, raw)}
    check("parity-reports GET", client.http.get(f"{REPORTS}?{raw}" if raw else REPORTS, headers=headers),
          {200, 400})
    added = (raw + "&" if raw else "") + urlencode([(extra, "evil")])
    check("parity-reports GET", client.http.get(f"{REPORTS}?{added}", headers=headers), {401})


@given(pairs=grouped_pairs({"cell_id": nasty_text}), style=styles, failing=st.booleans())
@fuzz(150, SOAK)
def test_list_cells_signed(client: Any, memory_cells: RecordingCells, pairs: list[tuple[str, str]], style: str,
                           failing: bool) -> None:
    ran("cells GET")
    if not usable(pairs):
        return
    raw = encode_query(pairs, style)
    headers = {"X-Timestamp": str(NOW), "X-Signature": sign_get(SECRET, NOW, CELLS, raw)}
    memory_cells.failing = failing
    try:
        res = client.http.get(f"{CELLS}?{raw}" if raw else CELLS, headers=headers)
    finally:
        memory_cells.failing = False
    check("cells GET", res, {200, 400} | ({503} if failing else set()))


# --- unsigned: refused, and nothing stored --------------------------------------------------------

ROUTES = [("POST", REPORTS), ("GET", REPORTS), ("PUT", CELLS + "/cell-a"), ("GET", CELLS)]


@given(route=st.sampled_from(ROUTES), body=st.one_of(raw_bodies, reports.map(dumps), statuses.map(dumps)),
       ts=header_values(), sig=header_values(), tamper=st.sampled_from(["headers", "other-body", "stale", "none"]),
       query=st.text(max_size=20))
@fuzz(150, SOAK)
def test_unsigned_is_refused_and_stores_nothing(client: Any, memory_cells: RecordingCells, route: tuple[str, str],
                                                body: bytes, ts: str, sig: str, tamper: str, query: str) -> None:
    method, path = route
    ran(f"{'parity-reports' if path == REPORTS else 'cells'} {method}")
    if re.search(r"[\ud800-\udfff]", ts + sig + query):
        return
    headers = {"Content-Type": "application/json"}
    if tamper == "headers":
        headers |= {"X-Timestamp": ts, "X-Signature": sig}
    elif tamper == "other-body":  # a real signature over other bytes (or, for a GET, another path)
        headers |= {"X-Timestamp": str(NOW), "X-Signature": sign_body(SECRET, NOW, body + b" ")}
    elif tamper == "stale":
        headers |= {"X-Timestamp": str(NOW - 301), "X-Signature": sign_body(SECRET, NOW - 301, body)}
    url = f"{path}?{quote(query)}" if method == "GET" and query else path
    res = client.http.request(method, url, body=body if method != "GET" else b"", headers=headers)
    check(f"{'parity-reports' if path == REPORTS else 'cells'} {method}", res, {400, 401, 413})
    assert memory_cells.writes == 0


def test_found_by_the_fuzz_ratios_beyond_dynamodb_numbers_are_stored(client: Any, cells: RecordingCells) -> None:
    # A drift of 3e-136 (below DynamoDB's smallest number) or with 40 digits passed validation and was
    # then refused by the store (400 "cannot be stored"): the cell's report was set aside for good.
    body = (b'{"cell_id":"cell-a","window":{"from":%d,"to":%d},"tolerance":1e-140,"clean":false,"orgs":['
            b'{"org_id":"a","cell_gb_seconds":1,"edge_gb_seconds":1,"drift":3.089570916827355e-136},'
            b'{"org_id":"b","cell_gb_seconds":1,"edge_gb_seconds":1,"drift":0.1234567890123456789012345678901234567891}'
            b']}') % (T0, T0 + 3600)
    res = send_signed(client, "POST", REPORTS, body)
    assert res.status_code == 200, res.body
    [stored] = cells.parity_reports("cell-a", T0, T0 + 1)
    assert [str(o.drift) for o in stored.orgs] == ["0E-12", "0.123456789012"]


def test_found_by_the_soak_integers_beyond_dynamodb_numbers_are_400_not_500(client: Any,
                                                                           cells: RecordingCells) -> None:
    # A 41-digit spool depth (or window) passed validation, then failed the store's number
    # serialisation: an unhandled 500. Now the body is refused with the reason, and nothing is stored.
    status = {"authority": "cell", "billers_running": False, "billed_through": 0, "pending_billable": 0,
              "spool_depth": 10**41}
    res = send_signed(client, "PUT", f"{CELLS}/cell-a", dumps(status))
    assert res.status_code == 400 and "spool_depth" in res.json_body["error"]
    report = {"cell_id": "cell-a", "window": {"from": 10**40, "to": 10**40 + 3600}, "tolerance": 0.02, "orgs": [],
              "clean": True}
    res = send_signed(client, "POST", REPORTS, dumps(report))
    assert res.status_code == 400 and "window" in res.json_body["error"]
    assert cells.writes == 0

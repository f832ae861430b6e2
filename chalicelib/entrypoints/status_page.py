"""The operator's status page: the status JSON (services/status.py) as one server-rendered HTML page.

No JavaScript, no external asset: inline CSS and SVG, so it loads in one request and works anywhere;
the layout narrows to one column on a phone. Colour is never the only signal: every grid square has a
text title, and each cell's row of the grid is summed up in words beside it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from html import escape
from typing import Any

SQUARE = 12
PER_ROW = 24  # squares per row of the grid: 24 x 14 px fits a phone
CSS = """
body{font:16px/1.45 system-ui,sans-serif;margin:0;color:#1a1a1a;background:#fff}
main{max-width:72rem;margin:auto;padding:1rem}
h1{font-size:1.5rem;margin:.2rem 0}h2{font-size:1.2rem;margin:1.6rem 0 .4rem}
table{border-collapse:collapse;width:100%;font-size:.95rem}
th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid #ccc;vertical-align:top}
.scroll{overflow-x:auto}.bad{color:#a00000;font-weight:600}.good{color:#006100}
.facts{display:grid;grid-template-columns:repeat(auto-fill,minmax(13rem,1fr));gap:.5rem;padding:0;list-style:none}
.facts li{border:1px solid #ccc;border-radius:4px;padding:.4rem .6rem}
.legend span{margin-right:1rem}code{font-size:.9rem;word-break:break-all}
.grid{list-style:none;padding:0}.grid li{margin:.5rem 0}.grid svg{display:block;margin-top:.2rem}
@media (max-width:40rem){
 table.cards thead{position:absolute;left:-9999px}
 table.cards,table.cards tbody,table.cards tr,table.cards td{display:block;width:auto}
 table.cards tr{border:1px solid #ccc;border-radius:4px;margin:.5rem 0;padding:.2rem .4rem}
 table.cards td{border:0;padding:.1rem 0}
 table.cards td::before{content:attr(data-label) ": ";font-weight:600}
}
"""
COLOURS = {"clean": "#2e7d32", "drift": "#c62828"}


def utc(ts: object) -> str:
    if not isinstance(ts, int) or isinstance(ts, bool):
        return "never" if ts is None else escape(str(ts))
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def table(caption: str, heads: Sequence[str], rows: Iterable[Sequence[str]], empty: str) -> str:
    """A table on a wide screen; on a phone each row a card, every value labelled with its column."""
    body = "".join("<tr>" + "".join(f'<td data-label="{escape(h)}">{c}</td>' for h, c in zip(heads, r, strict=True))
                   + "</tr>" for r in rows)
    if not body:
        return f"<p>{escape(empty)}</p>"
    head = "".join(f'<th scope="col">{escape(h)}</th>' for h in heads)
    return (f'{scroll(caption)}<table class="cards"><caption class="visually-hidden">{escape(caption)}</caption>'
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>")


def scroll(label: str) -> str:
    """A wide table scrolls inside its own region on a phone; focusable so a keyboard can scroll it too."""
    return f'<div class="scroll" role="region" tabindex="0" aria-label="{escape(label)} (scrolls sideways)">'


def facts(items: Mapping[str, str]) -> str:
    return '<ul class="facts">' + "".join(f"<li>{escape(k)}: <strong>{v}</strong></li>" for k, v in items.items()) \
        + "</ul>"


def cells_section(cells: Sequence[Mapping[str, Any]]) -> str:
    rows = [[escape(c["cell_id"]), escape(c["authority"]), "yes" if c["billers_running"] else "no",
             utc(c["billed_through"]), str(c["pending_billable"]), str(c["spool_depth"]),
             f'{c["age_seconds"]} s ago' + (' <span class="bad">(stale)</span>' if c["stale"] else "")]
            for c in cells]
    return "<h2 id=\"cells\">Cells</h2>" + table(
        "Cells", ["cell", "authority", "billers", "billed through", "pending billable", "spool", "last report"],
        rows, "No cell has reported its status.")


def parity_svg(cell_id: str, squares: Sequence[Mapping[str, Any]], buckets: Sequence[int]) -> str:
    index = {b: i for i, b in enumerate(buckets)}
    parts: list[str] = []
    counts = {"clean": 0, "drift": 0, "missing": 0}
    for sq in squares:
        i = index[sq["bucket_start"]]
        x, y = i % PER_ROW * (SQUARE + 2), i // PER_ROW * (SQUARE + 2)
        when = utc(sq["bucket_start"])
        if sq.get("missing"):
            counts["missing"] += 1
            parts.append(f'<rect x="{x + 1}" y="{y + 1}" width="{SQUARE - 2}" height="{SQUARE - 2}" fill="none" '
                         f'stroke="#767676" stroke-dasharray="2 2"><title>{when}: no report</title></rect>')
            continue
        kind = "clean" if sq["clean"] else "drift"
        counts[kind] += 1
        parts.append(f'<rect x="{x}" y="{y}" width="{SQUARE}" height="{SQUARE}" fill="{COLOURS[kind]}">'
                     f'<title>{when}: {kind}, max drift {escape(sq["max_drift"])}</title></rect>')
    summary = f"{counts['clean']} clean, {counts['drift']} drifting, {counts['missing']} missing"
    width = min(max(1, len(buckets)), PER_ROW) * (SQUARE + 2)
    height = max(1, -(-len(buckets) // PER_ROW)) * (SQUARE + 2)
    label = escape(f"parity of {cell_id}: {summary}")
    return (f"<li><strong>{escape(cell_id)}</strong>: {escape(summary)}<svg role=\"img\" aria-label=\"{label}\" "
            f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">{"".join(parts)}</svg></li>')


def parity_section(status: Mapping[str, Any]) -> str:
    soak = status["soak"]
    buckets = soak["buckets"]
    by_cell: dict[str, list[Mapping[str, Any]]] = {}
    for sq in status["parity"]:
        by_cell.setdefault(sq["cell_id"], []).append(sq)
    rows = "".join(parity_svg(c, sqs, buckets) for c, sqs in sorted(by_cell.items()))
    head = (f"<h2 id=\"parity\">Parity</h2><p>Settled buckets {utc(buckets[0] if buckets else soak['to'])} to "
            f"{utc(soak['to'])}, one square each, oldest first, {PER_ROW} to a row. "
            "<span class=\"legend\"><span>green: clean</span>"
            "<span>red: drift above tolerance</span><span>dashed outline: no report (a gap)</span></span></p>")
    if not rows:
        return head + "<p>No cell has reported its status.</p>"
    return head + f'<ul class="grid">{rows}</ul>'


def seam_section(status: Mapping[str, Any]) -> str:
    head = "<h2 id=\"seam\">Seam</h2>" + facts({"SHADOW": "true" if status["shadow"] else "false",
                                                  "BILL_FROM": f"{status['bill_from']} ({utc(status['bill_from'])})"})
    rows = [[utc(v["bucket_start"]), escape(", ".join(v["cells"]) or "-"), "yes" if v["edge"] else "no",
             str(v["edge_events"]),
             f'<span class="{"good" if v["verdict"] in ("cell", "edge") else "bad"}">{escape(v["verdict"])}</span>']
            for v in status["seam"]]
    return head + table("Seam", ["bucket", "billed by cells", "billed by the edge", "edge events", "verdict"], rows,
                        "Not armed: the edge computes in shadow and bills nothing (no seam yet).")


def errors_section(reports: Sequence[Mapping[str, Any]]) -> str:
    rows = [[utc(r["received_at"]), f'<code>{escape(r["event_id"])}</code>', escape(r["type"]),
             escape(r["summary"]), str(r["error_count"]),
             escape(", ".join(sorted({e["code"] for e in r["errors"]}))),
             "<br>".join(f"<code>{escape(m)}</code>" for m in r["marked"]) or "none of the edge's"]
            for r in reports]
    return "<h2 id=\"meter-errors\">Stripe meter error reports</h2>" + table(
        "Meter error reports", ["received", "event", "type", "summary", "errors", "codes", "rows marked not billed"],
        rows, "None received.")


def render(status: Mapping[str, Any]) -> str:
    rollup, outbox, free = status["rollup"], status["outbox"], status["free"]
    lag = rollup["lag_seconds"]
    oldest = outbox["oldest_pending_age_seconds"]
    body = "".join([
        f"<h1>edge-billing: stage {escape(str(status['stage']))}</h1><p>As of {utc(status['as_of'])}; "
        f"buckets of {status['bucket_seconds']} s. Read-only; JSON: <a href=\"status.json\">status.json</a>.</p>",
        cells_section(status["cells"]), parity_section(status), seam_section(status),
        "<h2 id=\"rollup\">Rollup and outbox</h2>",
        facts({"last settled bucket": utc(rollup["last_settled_bucket"]),
               "rollup lag": "-" if lag is None else f"{lag} s",
               "outbox pending": str(outbox["pending"]), "oldest pending": "-" if oldest is None else f"{oldest} s",
               "outbox failed": f'<span class="{"bad" if outbox["failed"] else "good"}">{outbox["failed"]}</span>',
               "quarantined envelopes": str(status["quarantine"])}),
        errors_section(status["meter_errors"]),
        "<h2 id=\"free\">Free tier</h2>",
        facts({"halted orgs": escape(", ".join(free["halted_orgs"]) or "none"),
               "lowest balances": escape(", ".join(f"{b['org_id']} ${b['balance']}" for b in free["lowest_balances"])
                                         or "none held")}),
    ])
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>edge-billing status: {escape(str(status['stage']))}</title>"
            f"<style>{CSS}.visually-hidden{{position:absolute;left:-9999px}}</style></head>"
            f"<body><main>{body}</main></body></html>")

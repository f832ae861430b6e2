"""The cell kit: what a cell (regional control plane) runs to take part in edge billing.

Layers, inner to outer: ``core`` (pure functions and dataclasses: tick math,
interval clipping, hourly aggregation, parity math, cap-token checks; no I/O,
no logging), ``ports`` (the typed Protocols the services need), ``adapters``
(SQLite, PostgreSQL, in-memory stores; the HTTP edge client; Stripe; JSON
logs), ``services`` (the imperative shell: ticker, forwarder, billers, parity,
status, sandbox-create gate) and the entry point ``python -m cellkit``.
The wire protocol is CONTRACT.md section 8; docs/cell-kit.md restates it.
"""

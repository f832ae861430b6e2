"""Adapters: stores (SQLite, PostgreSQL, memory), the HTTP transport, Stripe, JSON logs, clocks."""

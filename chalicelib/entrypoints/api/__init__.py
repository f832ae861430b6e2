"""Chalice blueprints: HTTP in, services out (app.py registers them)."""

"""Benchmarks (`python -m bench.ingest`, `python -m bench.rollup`): JSON on stdout, a table on stderr."""

import os

# The handlers log one INFO line per batch; a benchmark's output is its figures.
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")

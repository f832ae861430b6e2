"""moto's Query, reading only the items it can answer with.

moto 5 answers a Query by listing and sorting every item of the table (with comparisons that build a
Decimal per call), then keeping those of the asked partition: a query costs ~12 us per item stored.
The rollup reads a bucket as 32 shard partitions and the late index once per shard, so a test's cost
grew with the square of what it wrote (a query took 50 ms at 4,000 samples): the largest single cost
of `make test`. Here, during one Query, moto's list of the table's items holds only the candidates:
a table Query's partition (moto keeps it apart in a dict by partition key), or an index Query's items
whose index key equals the one asked (the test moto itself applies next, with its own equality). All
the rest (key conditions, order, paging, filters, projections) is moto's own code. The scope is per
thread, so a scan or a write on another thread sees the whole table. tests/integration/test_moto_state.py
checks the answers against moto's on random tables and queries.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable
from typing import Any

from moto.dynamodb.models.table import Table

MOTO_QUERY: Callable[..., Any] = Table.query
MOTO_ALL_ITEMS: Callable[[Table], list[Any]] = Table.all_items
_SIGNATURE = inspect.signature(MOTO_QUERY)
_SCOPE = threading.local()


def query_with_candidates(self: Table, *args: Any, **kwargs: Any) -> Any:
    arguments = _SIGNATURE.bind(self, *args, **kwargs).arguments
    if arguments.get("index_name"):
        _SCOPE.query = (self, None, list(arguments.get("hash_key_conditions") or []))
    elif arguments.get("hash_key") is not None:
        _SCOPE.query = (self, arguments["hash_key"], [])
    else:
        return MOTO_QUERY(self, *args, **kwargs)
    try:
        return MOTO_QUERY(self, *args, **kwargs)
    finally:
        _SCOPE.query = None


def candidate_items(self: Table) -> list[Any]:
    scope = getattr(_SCOPE, "query", None)
    if scope is None or scope[0] is not self:
        return MOTO_ALL_ITEMS(self)
    _, partition, index_keys = scope
    if partition is not None:
        stored = self.items.get(partition)  # .get: moto's items is a defaultdict
        items = [] if stored is None else list(stored.values()) if self.range_key_attr else [stored]
    else:
        items = [item for stored in self.items.values()
                 for item in (stored.values() if self.range_key_attr else [stored])
                 if all(item.attrs.get(name) and item.attrs[name] == value for name, value in index_keys)]
    # moto's own order for its list of items (a later stable sort may depend on it)
    return sorted(items, key=lambda x: (x.hash_key, x.range_key) if x.range_key else x.hash_key)


def install() -> None:
    Table.query = query_with_candidates  # type: ignore[method-assign]
    Table.all_items = candidate_items  # type: ignore[method-assign]


def uninstall() -> None:
    Table.query = MOTO_QUERY  # type: ignore[method-assign]
    Table.all_items = MOTO_ALL_ITEMS  # type: ignore[method-assign]

"""Every patch the tests and benches make to moto's internals, in one place, checked against moto's version.

moto's internals are not its API: each patch below reaches into a class or a dict that a moto release
may move. The version check fails at import, with this module's name, on a moto this was not checked
against; tests/integration/test_moto_state.py then checks each patch's answers against moto's own.

1. moto's Query, reading only the items it can answer with.

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

import copy
import inspect
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import moto
from moto.core import DEFAULT_ACCOUNT_ID
from moto.core import responses as moto_responses
from moto.core.serialize import (
    DEFAULT_ALIAS_PROVIDERS,
    AttributePickerContext,
    ResponseSerializer,
    XFormedAttributePicker,
)
from moto.core.utils import MISSING
from moto.core.utils import get_value as moto_get_value
from moto.dynamodb.models import dynamodb_backends
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.models.table import Table
from moto.s3.models import s3_backends

# The moto releases these patches were checked against (moto keeps its internals stable within a major).
SUPPORTED = ((5, 0), (6, 0))


def _release(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int("".join(c for c in minor if c.isdigit()) or 0)


def check_version(version: str = moto.__version__) -> None:
    if not SUPPORTED[0] <= _release(version) < SUPPORTED[1]:
        raise RuntimeError(f"tests/moto_patches.py patches moto's internals as of moto {SUPPORTED[0][0]}.x; "
                           f"moto {version} is installed: re-check each patch (tests/integration/test_moto_state.py)")


check_version()

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


# --- 1b. moto's response serializer, reading a dict's keys without asking every alias each time -------------
#
# moto 5.2 serializes a response by walking the operation's output shape and asking, for every member of
# every structure, each of six alias providers (and botocore's xform_name of each) for the member's value.
# A DynamoDB item is a map of AttributeValue structures of ten members, one of them present: a Query of 24
# items asked ~5,000 questions, and the serializer was over half of moto's time (profiled on
# tests/integration/test_cutover_cli.py). For a plain dict, what the providers answer depends only on the
# member's name, its shape and its parent's: here they are asked once per (service, parent, member) and the
# answer kept; the value is then the first of those keys the dict holds, as moto's picker finds it. Anything
# else (an object, a dict subclass, a picker with response transformers) goes to moto's own code.
# tests/integration/test_moto_state.py checks that responses are the same with and without it.

MOTO_GET_VALUE: Callable[..., Any] = ResponseSerializer.get_value
_ALIASES: dict[tuple[Any, ...], tuple[str, ...]] = {}


def get_value_with_known_aliases(self: ResponseSerializer, value: Any, key: str, shape: Any) -> Any:
    picker = self._value_picker
    if (type(value) is not dict or type(picker) is not XFormedAttributePicker or picker.response_transformers
            or picker.alias_providers is not DEFAULT_ALIAS_PROVIDERS):
        return MOTO_GET_VALUE(self, value, key, shape)
    parent = getattr(shape, "parent", None)
    asked = (self.service_model.service_name, key, shape.name, shape.type_name, shape.serialization.get("name"),
             hasattr(shape, "parent"), getattr(parent, "type_name", None), getattr(parent, "name", None))
    keys = _ALIASES.get(asked)
    if keys is None:
        context = AttributePickerContext(obj={}, key=key, shape=shape, operation_model=self.operation_model,
                                         service_model=self.service_model)
        keys = _ALIASES[asked] = tuple(picker.get_possible_keys(context))
    for possible in keys:
        if "." in possible:  # a path: moto's get_value walks it
            found = moto_get_value(value, possible, MISSING)
            if found is not MISSING:
                return found
        elif possible in value:
            return value[possible]
    return None


# Before each action moto lists its handler class's methods with inspect.getmembers (~0.5 ms a request, ~3 % of
# a moto test): a class's methods do not change between requests, so the list is made once per class.
MOTO_METHOD_NAMES = moto_responses.method_names_from_class
_METHOD_NAMES: dict[object, list[str]] = {}


def method_names_once(clazz: object) -> list[str]:
    if clazz not in _METHOD_NAMES:
        _METHOD_NAMES[clazz] = MOTO_METHOD_NAMES(clazz)
    return _METHOD_NAMES[clazz]


def install() -> None:
    Table.query = query_with_candidates  # type: ignore[method-assign]
    Table.all_items = candidate_items  # type: ignore[method-assign]
    ResponseSerializer.get_value = get_value_with_known_aliases  # type: ignore[method-assign]
    moto_responses.method_names_from_class = method_names_once


def uninstall() -> None:
    Table.query = MOTO_QUERY  # type: ignore[method-assign]
    Table.all_items = MOTO_ALL_ITEMS  # type: ignore[method-assign, assignment]
    ResponseSerializer.get_value = MOTO_GET_VALUE  # type: ignore[method-assign]
    moto_responses.method_names_from_class = MOTO_METHOD_NAMES


# --- 2. Emptying (or restoring) moto's tables and bucket in place ---------------------------------------------

def empty_tables(names: list[str], region: str = "us-east-1") -> None:
    """Empty moto's tables in place. Scanning and deleting through the API cost ~8 % of the suite (in
    proportion to what the previous test wrote); moto keeps a table's items in one dict, so clearing it
    is free. tests/integration/test_moto_state.py checks this still empties what the API sees."""
    tables = dynamodb_backends[DEFAULT_ACCOUNT_ID][region].tables
    for name in names:
        tables[name].items.clear()


def empty_bucket(name: str, s3_client: Any) -> None:
    """Create the bucket if missing and empty it in place (same reason, same check as empty_tables)."""
    buckets = s3_backends[DEFAULT_ACCOUNT_ID]["aws"].buckets
    if name not in buckets:
        s3_client.create_bucket(Bucket=name)
    buckets[name].keys.clear()


def table_names(region: str = "us-east-1") -> set[str]:
    """The tables moto holds (what ListTables answers, without a request: the fixtures ask before every test)."""
    return set(dynamodb_backends[DEFAULT_ACCOUNT_ID][region].tables)


def snapshot_tables(names: list[str], region: str = "us-east-1") -> dict[str, Any]:
    """A copy of moto's tables' items, for `restore_tables`: a fixture's world written through the API once
    per worker, then put back in place for each test that wants it (same dict as empty_tables; same check)."""
    tables = dynamodb_backends[DEFAULT_ACCOUNT_ID][region].tables
    return {name: copy.deepcopy(tables[name].items) for name in names}


def restore_tables(snapshot: dict[str, Any], region: str = "us-east-1") -> None:
    """Each table's items become a fresh copy of the snapshot's (a test's writes never reach the snapshot)."""
    tables = dynamodb_backends[DEFAULT_ACCOUNT_ID][region].tables
    for name, items in snapshot.items():
        tables[name].items.clear()
        tables[name].items.update(copy.deepcopy(items))


# --- 3. One backup per table per transaction (the benches) ---------------------------------------------

class _OneBackupPerTable:
    """Stands in for `copy` inside moto's DynamoDB backend during one transaction.

    moto backs a whole table up (a deepcopy, for rollback) once per *action* of
    a TransactWriteItems: with tens of thousands of samples, one late commit
    takes minutes. The backup here is one per table per call and shares the
    items the transaction cannot change in place (a Put or a Delete replaces
    the item in the table's dicts; only an Update mutates it, so those items
    are copied). Only moto's own work changes, not the requests the accountant
    prices; tests/bench/test_harness.py checks rollbacks still restore the table.
    """

    def __init__(self, transact_items: list[dict[str, Any]]) -> None:
        self.backups: dict[int, Any] = {}
        self.updated: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for action in transact_items:
            if "Update" in action:
                self.updated[action["Update"]["TableName"]].append(action["Update"]["Key"])

    def deepcopy(self, obj: Any) -> Any:
        if not isinstance(obj, Table):
            return copy.deepcopy(obj)
        if id(obj) not in self.backups:
            self.backups[id(obj)] = self._backup(obj)
        return self.backups[id(obj)]

    def _backup(self, table: Any) -> Any:
        backup = copy.copy(table)
        backup.items = defaultdict(dict, {h: dict(v) if isinstance(v, dict) else v for h, v in table.items.items()})
        for key in self.updated.get(table.name, []):
            h = DynamoType(key[table.hash_key_attr])
            if table.range_key_attr is None:
                if h in backup.items:
                    backup.items[h] = copy.deepcopy(backup.items[h])
                continue
            r = DynamoType(key[table.range_key_attr])
            if r in backup.items.get(h, {}):
                backup.items[h][r] = copy.deepcopy(backup.items[h][r])
        return backup


@contextmanager
def transactions_backed_up_once() -> Iterator[None]:
    """Swap moto's transaction for the one-backup-per-table one, and put moto's own back after."""
    import moto.dynamodb.models as models

    backend = models.DynamoDBBackend
    original = backend.transact_write_items

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        models.copy = _OneBackupPerTable(transact_items)  # type: ignore[assignment]
        try:
            original(self, transact_items)
        finally:
            models.copy = copy

    backend.transact_write_items = transact_write_items  # type: ignore[method-assign]
    try:
        yield
    finally:
        backend.transact_write_items = original  # type: ignore[method-assign]

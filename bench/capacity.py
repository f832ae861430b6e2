"""A DynamoDB capacity accountant hooked into botocore: DynamoDB's own sizing rules, not moto's.

moto's ConsumedCapacity is not what DynamoDB would charge, so every call is
priced here from the request and the response:
- writes: 1 unit per started 1 KB of item (a failed conditional write costs the same),
  plus the same again for every GSI the written item appears in (or leaves);
- reads: 1 unit per started 4 KB, half when eventually consistent; a Query sums
  the sizes of all returned items before rounding (at least one unit);
- transactions: twice the units of the same operations outside a transaction.
Item size: attribute name bytes plus value bytes (numbers ~ 1 byte per two digits + 1).
An UpdateItem is priced at the size of the item after the update, tracked from
earlier writes in this run (the request alone does not show the whole item).
"""

from __future__ import annotations

import math
import threading
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

WRITE_OPS = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}
READ_OPS = {"GetItem", "Query", "Scan", "BatchGetItem", "TransactGetItems"}


def value_size(value: dict[str, Any]) -> int:
    (kind, v), = value.items()
    if kind == "S":
        return len(v.encode())
    if kind == "B":
        return len(v)
    if kind == "N":
        digits = len(v.lstrip("-").replace(".", "").strip("0")) or 1
        return math.ceil(digits / 2) + 1
    if kind in ("BOOL", "NULL"):
        return 1
    if kind in ("SS", "BS"):
        return sum(len(x.encode() if isinstance(x, str) else x) for x in v)
    if kind == "NS":
        return sum(value_size({"N": x}) for x in v)
    if kind == "L":
        return 3 + sum(1 + value_size(x) for x in v)
    if kind == "M":
        return 3 + sum(len(k.encode()) + 1 + value_size(x) for k, x in v.items())
    raise ValueError(f"unknown DynamoDB type {kind}")


def item_size(item: dict[str, Any]) -> int:
    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


def write_units(size: int) -> int:
    return max(1, math.ceil(size / 1024))


def read_units(size: int, consistent: bool) -> float:
    units = max(1, math.ceil(size / 4096))
    return units if consistent else units / 2


@dataclass
class Accountant:
    """Register on a boto3 DynamoDB client with `attach`; read totals after the workload."""

    gsi_keys: dict[str, list[set[str]]]
    wu: float = 0.0
    ru: float = 0.0
    requests: Counter[str] = field(default_factory=Counter)
    # Units by "Operation table", so a report can say where they go.
    units: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    sizes: dict[tuple[str, str], int] = field(default_factory=dict)
    enabled: bool = True
    # Optional: (operation, request) -> a label; the write units of labelled requests are summed per label too.
    tagger: Callable[[str, dict[str, Any]], str | None] | None = None
    tagged: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    # The reducer's conditional puts run several at once (chalicelib/adapters/dynamodb/parallel.py): the
    # hooks fire on its threads, and a total added to from two at once would lose units.
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @classmethod
    def for_tables(cls, specs: list[dict[str, Any]]) -> Accountant:
        """From `chalicelib.tables.table_specs`: the same definitions the stack is deployed with."""
        creates = [s["create"] for s in specs]
        keys = {
            c["TableName"]: [{k["AttributeName"] for k in g["KeySchema"]} for g in c.get("GlobalSecondaryIndexes", [])]
            for c in creates
        }
        return cls(gsi_keys=keys)

    def attach(self, client: Any) -> Any:
        client.meta.events.register("before-parameter-build.dynamodb.*", self._before)
        client.meta.events.register("after-call.dynamodb.*", self._after)
        return client

    def reset(self) -> None:
        self.wu, self.ru = 0.0, 0.0
        self.requests.clear()
        self.units.clear()
        self.tagged.clear()

    @property
    def request_count(self) -> int:
        return sum(self.requests.values())

    # --- hooks -------------------------------------------------------------
    def _before(self, model: Any, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        with self.lock:
            self._count(model, params, context)

    def _count(self, model: Any, params: dict[str, Any], context: dict[str, Any]) -> None:
        if not self.enabled:
            return
        op = model.name
        self.requests[op] += 1
        context["capacity_params"] = params
        if op in WRITE_OPS:
            units = self._write(op, params)
            self.wu += units
            self.units[f"{op} {_tables(params)}"] += units
            if self.tagger is not None and (tag := self.tagger(op, params)):
                self.tagged[tag] += units

    def _after(self, model: Any, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        params = context.get("capacity_params")
        if not self.enabled or params is None or model.name not in READ_OPS:
            return
        units = self._read(model.name, params, parsed)
        with self.lock:
            self.ru += units
            self.units[f"{model.name} {_tables(params)}"] += units

    # --- pricing -------------------------------------------------------------
    def _key(self, table: str, item: dict[str, Any]) -> tuple[str, str]:
        return table, repr(sorted((k, repr(v)) for k, v in item.items() if k in ("pk", "sk", "id", "org_id")))

    def _put(self, table: str, item: dict[str, Any], factor: int = 1) -> float:
        size = item_size(item)
        self.sizes[self._key(table, item)] = size
        indexes = sum(1 for keys in self.gsi_keys.get(table, []) if keys <= item.keys())
        return factor * write_units(size) * (1 + indexes)

    def _update(self, params: dict[str, Any], factor: int = 1) -> float:
        table = params["TableName"]
        known = self.sizes.get(self._key(table, params["Key"]), item_size(params["Key"]))
        values = params.get("ExpressionAttributeValues", {})
        size = known + sum(value_size(v) + 8 for v in values.values())
        self.sizes[self._key(table, params["Key"])] = size
        expression = params.get("UpdateExpression", "")
        names = params.get("ExpressionAttributeNames", {})
        touched = {names.get(tok, tok) for tok in expression.replace(",", " ").replace("=", " ").split()}
        indexes = sum(1 for keys in self.gsi_keys.get(table, []) if keys & touched)
        return factor * write_units(size) * (1 + indexes)

    def _write(self, op: str, params: dict[str, Any]) -> float:
        if op == "PutItem":
            return self._put(params["TableName"], params["Item"])
        if op == "UpdateItem":
            return self._update(params)
        if op == "DeleteItem":
            return write_units(self.sizes.pop(self._key(params["TableName"], params["Key"]), 1))
        if op == "BatchWriteItem":
            total = 0.0
            for table, requests in params["RequestItems"].items():
                for r in requests:
                    total += self._put(table, r["PutRequest"]["Item"]) if "PutRequest" in r else 1
            return total
        total = 0.0
        for t in params["TransactItems"]:
            if "Put" in t:
                total += self._put(t["Put"]["TableName"], t["Put"]["Item"], factor=2)
            elif "Update" in t:
                total += self._update(t["Update"], factor=2)
            else:
                total += 2
        return total

    def _read(self, op: str, params: dict[str, Any], parsed: dict[str, Any]) -> float:
        consistent = bool(params.get("ConsistentRead"))
        if op == "GetItem":
            return read_units(item_size(parsed.get("Item", {})), consistent)
        if op in ("Query", "Scan"):
            return read_units(sum(item_size(i) for i in parsed.get("Items", [])), consistent)
        if op == "BatchGetItem":
            return sum(
                read_units(item_size(i), consistent) for items in parsed.get("Responses", {}).values() for i in items
            ) or 0.5
        return sum(2 * read_units(item_size(r.get("Item", {})), True) for r in parsed.get("Responses", []))


def _tables(params: dict[str, Any]) -> str:
    if "TableName" in params:
        return str(params["TableName"]) + (f"/{params['IndexName']}" if "IndexName" in params else "")
    if "TransactItems" in params:
        names = {next(iter(t.values()))["TableName"] for t in params["TransactItems"]}
    else:
        names = set(params.get("RequestItems", {}))
    return "+".join(sorted(names))

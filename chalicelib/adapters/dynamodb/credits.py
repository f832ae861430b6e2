"""The free tier on DynamoDB: the tick ledger in the samples table, the rest in the control table.

Layout (docs/data-model.md): ledger `f#{slot:012d}#{shard}` / event id (late-written ones carry
`lt` and, until counted, the sparse `late` index key `flate#{shard}`); accounts `credit#{n}` / org;
grant keys `grant#{org}` / key; open spend `credit_pending` / shard; `halted` / org; `notice` / org.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from chalicelib.adapters.dynamodb.common import (
    Tables,
    conditional_transaction,
    conditional_write,
    from_item,
    guarded,
    to_item,
)
from chalicelib.adapters.dynamodb.items import transaction_token
from chalicelib.adapters.dynamodb.parallel import each_at_once
from chalicelib.core.credits import (
    ACCOUNT_SHARDS,
    FREE_SHARDS,
    Account,
    Change,
    FreeTick,
    HaltedOrg,
    Notice,
    Pending,
    crc_shard,
)
from chalicelib.credit_ports import CreditStore


def _ledger_key(slot: int, event_id: str) -> dict[str, Any]:
    return {"pk": {"S": f"f#{slot:012d}#{crc_shard(event_id, FREE_SHARDS)}"}, "sk": {"S": event_id}}


def _tick_item(t: FreeTick) -> dict[str, Any]:
    data: dict[str, Any] = {
        "pk": f"f#{t.slot_start:012d}#{t.shard}", "sk": t.event_id, "org_id": t.org_id,
        "slot": t.slot_start, "cost": t.cost_micro, "expires_at": t.expires_at,
    }
    if t.late:
        # `lt` stays (the slot pass never counts it); the index key goes once its cost is in an account.
        data |= {"lt": 1, "late_pk": f"flate#{t.shard}", "late_sk": f"{t.slot_start:012d}#{t.event_id}"}
    return to_item(data)


def _tick(item: dict[str, Any]) -> FreeTick:
    # Read straight from the wire types, not through boto3's TypeDeserializer: the spend pass parses every tick
    # of the open slot each minute, and the deserializer's Decimal context made this ~6 us a tick (its CPU was
    # the pass's ceiling: docs/capacity.md, "credits"). The attributes are the ones `_tick_item` writes.
    return FreeTick(item["sk"]["S"], item["org_id"]["S"], int(item["slot"]["N"]), int(item["cost"]["N"]),
                    int(item["expires_at"]["N"]), late="lt" in item)


# Only what `_tick` reads (the RCU are the same: DynamoDB charges the whole item; the bytes over the wire and
# their parse are not). `#`-names: `slot` and `cost` are not reserved today, but the list is long and grows.
TICK_PROJECTION = {"ProjectionExpression": "#sk, #org, #slot, #cost, #exp, #lt",
                   "ExpressionAttributeNames": {"#sk": "sk", "#org": "org_id", "#slot": "slot", "#cost": "cost",
                                                "#exp": "expires_at", "#lt": "lt"}}


def _account_key(org_id: str) -> dict[str, Any]:
    return {"pk": {"S": f"credit#{crc_shard(org_id, ACCOUNT_SHARDS)}"}, "sk": {"S": org_id}}


def _account_item(a: Account, version: int) -> dict[str, Any]:
    return _account_key(a.org_id) | to_item({
        "seed": a.seed_micro, "granted": a.granted_micro, "spent": a.spent_micro, "version": version,
        "applied": json.dumps({str(k): v for k, v in sorted(a.applied.items())}),
        "halted": a.halted, "applied_from": a.applied_from, "halted_at": a.halted_at,
        "notice_seq": a.notice_seq, "ended": a.ended, "updated_at": a.updated_at,
    })


def _account(item: dict[str, Any]) -> Account:
    d = from_item(item)
    return Account(
        org_id=d["sk"], seed_micro=int(d["seed"]), granted_micro=int(d["granted"]),
        spent_micro=int(d["spent"]),
        applied={int(k): int(v) for k, v in json.loads(d["applied"]).items()}, version=int(d["version"]),
        applied_from=int(d["applied_from"]), halted=bool(d["halted"]), halted_at=int(d["halted_at"]),
        notice_seq=int(d["notice_seq"]),
        ended=bool(d["ended"]), updated_at=int(d["updated_at"]),
    )


def _notice(item: dict[str, Any]) -> Notice:
    d = from_item(item)
    return Notice(d["sk"], d["kind"], int(d["seq"]), int(d["at"]), frozenset(d.get("acked", set())),
                  int(d.get("attempts", 0)), int(d.get("next_at", 0)))


class DynamoCredits(Tables, CreditStore):
    def __init__(self, client: Any, table_prefix: str, retention_seconds: int = 0) -> None:
        super().__init__(client, table_prefix, retention_seconds)

    @guarded
    def put_free_ticks(self, ticks: list[FreeTick]) -> int:
        unique = list({(t.slot_start, t.event_id): t for t in ticks}.values())
        self._batch_write(self.samples_table, [{"PutRequest": {"Item": _tick_item(t)}} for t in unique if not t.late])
        new_late = 0
        for t in (t for t in unique if t.late):
            # Only a first write may enter the late path: a replay of a counted tick must not.
            new_late += conditional_write(self.client.put_item, TableName=self.samples_table, Item=_tick_item(t),
                                          ConditionExpression="attribute_not_exists(pk)")
        return new_late

    @guarded
    def slot_ticks(self, slot_start: int) -> list[FreeTick]:
        # The slot's shards are separate partitions, each read at its own 3,000 RCU/s: read at once, a pass
        # over a big open slot takes a quarter of the time (docs/capacity.md, "credits").
        def shard_ticks(shard: int) -> list[FreeTick]:
            return [_tick(item) for item in self._query(
                TableName=self.samples_table, KeyConditionExpression="pk = :pk", ConsistentRead=True,
                ExpressionAttributeValues={":pk": {"S": f"f#{slot_start:012d}#{shard}"}}, **TICK_PROJECTION,
            )]

        return [t for ticks in each_at_once(shard_ticks, range(FREE_SHARDS), FREE_SHARDS) for t in ticks]

    @guarded
    def late_free_ticks(self, limit: int = 10_000) -> list[FreeTick]:
        found: list[FreeTick] = []
        for shard in range(FREE_SHARDS):
            for item in self._query(TableName=self.samples_table, IndexName="late",
                                    KeyConditionExpression="late_pk = :p",
                                    ExpressionAttributeValues={":p": {"S": f"flate#{shard}"}}):
                found.append(_tick(item))
                if len(found) >= limit:
                    return found
        return found

    @guarded
    def accounts(self, org_ids: list[str]) -> dict[str, Account]:
        keys = [_account_key(o) for o in sorted(set(org_ids))]
        return {a.org_id: a for a in map(_account, self._batch_get(self.control_table, keys, consistent=True))}

    @guarded
    def all_accounts(self) -> list[Account]:
        found: list[Account] = []
        for shard in range(ACCOUNT_SHARDS):
            found += map(_account, self._query(TableName=self.control_table, KeyConditionExpression="pk = :pk",
                                               ExpressionAttributeValues={":pk": {"S": f"credit#{shard}"}}))
        return found

    def _account_put(self, change: Change, expected: int) -> dict[str, Any]:
        put: dict[str, Any] = {"TableName": self.control_table, "Item": _account_item(change.account, expected + 1)}
        if expected == 0:
            return put | {"ConditionExpression": "attribute_not_exists(pk)"}
        return put | {"ConditionExpression": "version = :v", "ExpressionAttributeValues": {":v": {"N": str(expected)}}}

    def _side_actions(self, change: Change, cleared: Sequence[FreeTick], grant_key: str | None) -> list[Any]:
        a, table = change.account, self.control_table
        actions: list[dict[str, Any]] = [
            {"Update": {"TableName": self.samples_table, "Key": _ledger_key(t.slot_start, t.event_id),
                        "UpdateExpression": "REMOVE late_pk, late_sk",
                        "ConditionExpression": "attribute_exists(late_pk)"}}
            for t in cleared
        ]
        if grant_key is not None:
            actions.append({"Put": {"TableName": table, "ConditionExpression": "attribute_not_exists(pk)",
                                    "Item": to_item({"pk": f"grant#{a.org_id}", "sk": grant_key, "at": a.updated_at})}})
        if change.halts:
            actions.append({"Put": {"TableName": table, "Item": to_item(
                {"pk": "halted", "sk": a.org_id, "halted_at": a.halted_at, "reason": "credits_exhausted"})}})
        if change.resumes:
            actions.append({"Delete": {"TableName": table, "Key": {"pk": {"S": "halted"}, "sk": {"S": a.org_id}}}})
        if change.halts or change.resumes:
            actions.append({"Put": {"TableName": table, "Item": to_item({
                "pk": "notice", "sk": a.org_id, "kind": "halt" if change.halts else "resume",
                "seq": a.notice_seq, "at": a.updated_at, "attempts": 0, "next_at": a.updated_at})}})
        return actions

    @guarded
    def commit_account(
        self, change: Change, expected_version: int, cleared: Sequence[FreeTick] = (), grant_key: str | None = None
    ) -> bool:
        put = self._account_put(change, expected_version)
        side = self._side_actions(change, cleared, grant_key)
        if not side:
            return conditional_write(self.client.put_item, **put)
        actions = [{"Put": put}, *side]
        return conditional_transaction(self.client, actions, transaction_token(actions))

    @guarded
    def grant_recorded(self, org_id: str, grant_key: str) -> bool:
        key = {"pk": {"S": f"grant#{org_id}"}, "sk": {"S": grant_key}}
        return "Item" in self.client.get_item(TableName=self.control_table, Key=key, ConsistentRead=True)

    @guarded
    def pending(self, org_id: str) -> Pending | None:
        n = self.pending_layout()
        if not n:
            return None
        key = {"pk": {"S": "credit_pending"}, "sk": {"S": f"{n:04d}#{crc_shard(org_id, n):04d}"}}
        item = self.client.get_item(TableName=self.control_table, Key=key).get("Item")
        entry = json.loads(from_item(item)["entries"]).get(org_id) if item else None
        return Pending(int(entry[0]), int(entry[1])) if entry else None

    @guarded
    def pending_layout(self) -> int:
        key = {"pk": {"S": "credit_pending"}, "sk": {"S": "layout"}}
        item = self.client.get_item(TableName=self.control_table, Key=key).get("Item")
        return int(from_item(item)["n"]) if item else 0

    @guarded
    def pending_shards(self, layout: int) -> dict[int, dict[str, Pending]]:
        items = self._query(TableName=self.control_table, KeyConditionExpression="pk = :pk AND begins_with(sk, :n)",
                            ExpressionAttributeValues={":pk": {"S": "credit_pending"}, ":n": {"S": f"{layout:04d}#"}})
        return {int(d["sk"][5:]): {o: Pending(int(e[0]), int(e[1])) for o, e in json.loads(d["entries"]).items()}
                for d in map(from_item, items)}

    @guarded
    def put_pending(self, layout: int, shard: int, entries: dict[str, Pending]) -> None:
        body = json.dumps({o: [p.micro, p.version] for o, p in sorted(entries.items())}, separators=(",", ":"))
        self.client.put_item(TableName=self.control_table, Item=to_item(
            {"pk": "credit_pending", "sk": f"{layout:04d}#{shard:04d}", "entries": body}))

    @guarded
    def set_pending_layout(self, layout: int) -> None:
        self.client.put_item(TableName=self.control_table,
                             Item=to_item({"pk": "credit_pending", "sk": "layout", "n": layout}))

    @guarded
    def halted_orgs(self) -> list[HaltedOrg]:
        items = self._query(TableName=self.control_table, KeyConditionExpression="pk = :pk", ConsistentRead=True,
                            ExpressionAttributeValues={":pk": {"S": "halted"}})
        return [HaltedOrg(d["sk"], int(d["halted_at"]), d["reason"]) for d in map(from_item, items)]

    @guarded
    def notices(self) -> list[Notice]:
        items = self._query(TableName=self.control_table, KeyConditionExpression="pk = :pk", ConsistentRead=True,
                            ExpressionAttributeValues={":pk": {"S": "notice"}})
        return list(map(_notice, items))

    @guarded
    def record_push(self, notice: Notice, acked: set[str], done: bool) -> bool:
        key = {"pk": {"S": "notice"}, "sk": {"S": notice.org_id}}
        values: dict[str, Any] = {":s": {"N": str(notice.seq)}}
        if done:
            return conditional_write(self.client.delete_item, TableName=self.control_table, Key=key,
                                     ConditionExpression="seq = :s", ExpressionAttributeValues=values)
        update = "SET attempts = :a, next_at = :n"
        values |= {":a": {"N": str(notice.attempts)}, ":n": {"N": str(notice.next_at)}}
        if acked:
            update += " ADD acked :c"
            values[":c"] = {"SS": sorted(acked)}
        return conditional_write(self.client.update_item, TableName=self.control_table, Key=key,
                                 UpdateExpression=update, ConditionExpression="seq = :s",
                                 ExpressionAttributeValues=values)

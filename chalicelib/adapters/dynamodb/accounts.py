"""DynamoDB adapter for the account side: price catalog, webhook event ids, org plan transitions.

Every org change is an UpdateItem with a condition (never a read-modify-put),
so a late or concurrent webhook delivery cannot overwrite a newer state.
Layout: docs/data-model.md (control table `catalog` and `stripe_event` items,
orgs table and its `by_customer` index).
"""

from __future__ import annotations

from typing import Any

from chalicelib.adapters.dynamodb.common import conditional_update, from_item, guarded, to_item
from chalicelib.adapters.dynamodb.items import read_org
from chalicelib.core.catalog import CatalogEntry
from chalicelib.core.orgs import Org, Plan
from chalicelib.core.subscriptions import Subscription
from chalicelib.ports import AccountStore, CatalogStore

CATALOG_PK = "catalog"
EVENT_PK = "stripe_event"
# Stripe retries a delivery for up to three days; remember handled ids well past that.
EVENT_MEMORY_SECONDS = 30 * 86400


class DynamoAccounts(AccountStore, CatalogStore):
    def __init__(self, client: Any, table_prefix: str) -> None:
        self.client = client
        self.orgs_table = f"{table_prefix}-orgs"
        self.control_table = f"{table_prefix}-control"

    # --- catalog -------------------------------------------------------------
    @guarded
    def catalog(self) -> list[CatalogEntry]:
        out = self.client.query(
            TableName=self.control_table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": CATALOG_PK}},
            ConsistentRead=True,
        )
        return [
            CatalogEntry(d["sk"], d["price_id"], d["lookup_key"], d["meter"]) for d in map(from_item, out["Items"])
        ]

    @guarded
    def publish_catalog(self, entries: list[CatalogEntry], now: int) -> None:
        if not entries:
            raise ValueError("refusing to publish an empty catalog")
        stale = {e.key for e in self.catalog()} - {e.key for e in entries}
        requests: list[dict[str, Any]] = [
            {"Put": {"TableName": self.control_table, "Item": to_item({
                "pk": CATALOG_PK, "sk": e.key, "price_id": e.price_id, "lookup_key": e.lookup_key,
                "meter": e.meter, "published_at": now,
            })}}
            for e in entries
        ]
        requests += [
            {"Delete": {"TableName": self.control_table, "Key": to_item({"pk": CATALOG_PK, "sk": key})}}
            for key in sorted(stale)
        ]
        # One transaction: readers see the old catalog or the new one, never half of each.
        self.client.transact_write_items(TransactItems=requests)

    # --- orgs ----------------------------------------------------------------
    @guarded
    def get_org(self, org_id: str) -> Org | None:
        return read_org(self.client, self.orgs_table, org_id)

    @guarded
    def org_by_customer(self, customer: str) -> Org | None:
        out = self.client.query(
            TableName=self.orgs_table,
            IndexName="by_customer",
            KeyConditionExpression="stripe_customer_id = :c",
            ExpressionAttributeValues={":c": {"S": customer}},
            Limit=2,
        )
        if not out["Items"]:
            return None
        return self.get_org(out["Items"][0]["org_id"]["S"])

    def _update(self, org_id: str, update: str, condition: str, values: dict[str, Any], **extra: Any) -> bool:
        return conditional_update(
            self.client,
            TableName=self.orgs_table,
            Key={"org_id": {"S": org_id}},
            UpdateExpression=update,
            ConditionExpression=condition,
            ExpressionAttributeValues=to_item(values),
            **extra,
        )

    @guarded
    def attach_subscription(self, org_id: str, sub: Subscription, previous: str | None, now: int) -> bool:
        allowed = [":sid"] + ([":prev"] if previous else [])
        values: dict[str, Any] = {":sid": sub.subscription_id, ":items": list(sub.item_ids) or None, ":now": now}
        if previous:
            values[":prev"] = previous
        update = "SET subscription_id = :sid, updated_at = :now" + (
            ", subscription_item_ids = :items" if sub.item_ids else ""
        )
        return self._update(
            org_id, update,
            f"attribute_not_exists(subscription_id) OR subscription_id IN ({', '.join(allowed)})",
            {k: v for k, v in values.items() if v is not None},
        )

    @guarded
    def claim_org(self, org_id: str, holder: str, now: int, until: int) -> bool:
        return self._update(
            org_id, "SET lease_holder = :h, lease_until = :u",
            "attribute_not_exists(lease_until) OR lease_until <= :now OR lease_holder = :h",
            {":h": holder, ":u": until, ":now": now},
        )

    @guarded
    def release_org(self, org_id: str, holder: str) -> None:
        # A lease taken over after expiry is the new holder's: the condition leaves it alone.
        self._update(org_id, "REMOVE lease_holder, lease_until", "lease_holder = :h", {":h": holder})

    @guarded
    def detach_subscription(self, org_id: str, subscription_id: str, now: int) -> bool:
        return self._update(
            org_id, "SET updated_at = :now REMOVE subscription_id, subscription_item_ids",
            "subscription_id = :sid", {":sid": subscription_id, ":now": now},
        )

    @guarded
    def record_credit(self, org_id: str, txn_id: str, now: int) -> bool:
        return self._update(
            org_id, "SET credit_txn_id = :t, updated_at = :now",
            "attribute_not_exists(credit_txn_id) OR credit_txn_id = :t", {":t": txn_id, ":now": now},
        )

    @guarded
    def set_plan(
        self, org_id: str, plan: Plan, changed_at: int, now: int,
        customer: str | None = None, only_subscription: str | None = None,
    ) -> bool:
        update = "SET #plan = :plan, plan_changed_at = :c, updated_at = :now"
        values: dict[str, Any] = {":plan": plan, ":c": changed_at, ":now": now}
        if customer:
            update += ", stripe_customer_id = if_not_exists(stripe_customer_id, :cus)"
            values[":cus"] = customer
        if plan == "free" and only_subscription:
            update += " REMOVE subscription_id, subscription_item_ids"
        condition = "(attribute_not_exists(plan_changed_at) OR plan_changed_at <= :c)"
        if only_subscription:
            condition += " AND (attribute_not_exists(subscription_id) OR subscription_id = :sid)"
            values[":sid"] = only_subscription
        return self._update(org_id, update, condition, values, ExpressionAttributeNames={"#plan": "plan"})

    # --- webhook event ids ------------------------------------------------------
    @guarded
    def event_seen(self, event_id: str) -> bool:
        out = self.client.get_item(
            TableName=self.control_table, Key=to_item({"pk": EVENT_PK, "sk": event_id}), ConsistentRead=True
        )
        return "Item" in out

    @guarded
    def remember_event(self, event_id: str, event_type: str, now: int) -> None:
        # No condition: a concurrent duplicate delivery rewrites the same id, harmlessly.
        self.client.put_item(
            TableName=self.control_table,
            Item=to_item({"pk": EVENT_PK, "sk": event_id, "type": event_type, "handled_at": now,
                          "expires_at": now + EVENT_MEMORY_SECONDS}),
        )

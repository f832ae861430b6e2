"""The org records: strongly consistent reads, named-field updates."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from chalicelib.adapters.dynamodb.common import Tables, guarded, to_item
from chalicelib.adapters.dynamodb.items import org_from_item, org_to_item, read_org
from chalicelib.core.orgs import Org


class OrgRecords(Tables):
    @guarded
    def get_orgs(self, org_ids: Iterable[str]) -> dict[str, Org]:
        keys = [{"org_id": {"S": o}} for o in sorted(set(org_ids))]
        return {o.org_id: o for o in map(org_from_item, self._batch_get(self.orgs_table, keys))}

    @guarded
    def get_org(self, org_id: str) -> Org | None:
        return read_org(self.client, self.orgs_table, org_id)

    @guarded
    def put_org(self, org: Org) -> Org:
        self.client.put_item(TableName=self.orgs_table, Item=org_to_item(org))
        return org

    @guarded
    def update_org(self, org_id: str, fields: dict[str, Any], now: int) -> Org:
        # An UpdateItem of the named fields only: a concurrent webhook's plan change is never overwritten.
        values = {k: v for k, v in fields.items() if v is not None} | {"updated_at": now}
        names = {f"#{k}": k for k in values}
        out = self.client.update_item(
            TableName=self.orgs_table,
            Key={"org_id": {"S": org_id}},
            UpdateExpression="SET " + ", ".join(f"#{k} = :{k}" for k in values),
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=to_item({f":{k}": v for k, v in values.items()}),
            ReturnValues="ALL_NEW",
        )
        return org_from_item(out["Attributes"])

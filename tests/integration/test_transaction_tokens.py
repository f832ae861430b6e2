"""The late commit's ClientRequestToken: DynamoDB replays a token's first answer for 10 minutes only
when the parameters are identical, and raises IdempotentParameterMismatchException otherwise (moto
ignores tokens, so this checks what the adapter asks for)."""

from __future__ import annotations

import dataclasses
from typing import Any

from chalicelib.adapters.dynamodb.store import DynamoStore
from chalicelib.settings import Settings
from tests.conftest import PREFIX
from tests.contract.test_billing_store import chunk, row, sample


class RecordingClient:
    """The moto client, with every TransactWriteItems request kept."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.requests: list[dict[str, Any]] = []

    def transact_write_items(self, **request: Any) -> Any:
        self.requests.append(request)
        return self.client.transact_write_items(**request)

    def __getattr__(self, name: str) -> Any:  # everything else goes to moto unchanged
        return getattr(self.client, name)


def test_a_retry_reuses_the_token_and_another_runs_commit_does_not(dynamodb: Any, settings: Settings) -> None:
    recording = RecordingClient(dynamodb)
    store = DynamoStore(recording, PREFIX, settings.sample_retention_seconds)
    store.put_samples([sample("l1", late=True), sample("l2", late=True)])
    mine = chunk(["l1", "l2"], [row("o1:late:1")])
    assert store.commit_late_chunk(mine, now=1)
    # The same request again (a retry after its answer was lost): the same token, so DynamoDB does not
    # apply it twice. Here it is refused by its conditions, as it would be after the 10 minutes.
    assert not store.commit_late_chunk(mine, now=1)
    # The same stragglers committed by a racing run (its own run id on the delta row): another request,
    # so another token; its conditions refuse it rather than DynamoDB raising a parameter mismatch.
    theirs = dataclasses.replace(mine, rows=[dataclasses.replace(mine.rows[0], run_id="run-2")])
    assert not store.commit_late_chunk(theirs, now=1)
    first, retry, racing = (r["ClientRequestToken"] for r in recording.requests)
    assert first == retry and racing != first
    assert all(0 < len(t) <= 36 for t in (first, racing))

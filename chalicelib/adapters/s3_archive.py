"""Raw ingest batches, gzipped to S3 (best effort) so samples can be rebuilt from them."""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.observability import logger


def batch_key(cell_id: str, received_at: int, body: bytes) -> str:
    """raw/{cell_id}/{yyyy-mm-dd}/{received_at}-{digest}.json.gz: a re-sent batch lands on its own key."""
    day = datetime.fromtimestamp(received_at, tz=UTC).strftime("%Y-%m-%d")
    digest = hashlib.sha256(body).hexdigest()[:16]
    return f"raw/{cell_id}/{day}/{received_at}-{digest}.json.gz"


class S3Archive:
    def __init__(self, client: Any, bucket: str) -> None:
        self.client = client
        self.bucket = bucket

    def put_batch(self, cell_id: str, received_at: int, body: bytes) -> str | None:
        """Archive one batch; a failure is logged, never raised (samples are already stored)."""
        if not self.bucket:
            return None
        key = batch_key(cell_id, received_at, body)
        try:
            self.client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=gzip.compress(body),
                ContentType="application/json",
                ContentEncoding="gzip",
            )
        except (ClientError, BotoCoreError) as exc:
            logger.warning("archive_failed", extra={"cell_id": cell_id, "key": key, "error": str(exc)})
            return None
        return key

    def batches(self, cell_id: str | None, day: str) -> Iterator[tuple[str, bytes]]:
        """Every archived batch of one day (all cells, or one), decompressed."""
        paginator = self.client.get_paginator("list_objects_v2")
        if cell_id:
            cells = [cell_id]
        else:
            pages = paginator.paginate(Bucket=self.bucket, Prefix="raw/", Delimiter="/")
            cells = [p["Prefix"].split("/")[1] for page in pages for p in page.get("CommonPrefixes", [])]
        for cell in cells:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=f"raw/{cell}/{day}/"):
                for obj in page.get("Contents", []):
                    body = self.client.get_object(Bucket=self.bucket, Key=obj["Key"])["Body"].read()
                    yield obj["Key"], gzip.decompress(body)

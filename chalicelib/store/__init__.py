"""The store port (base.py) and its DynamoDB adapter (dynamodb.py)."""

from chalicelib.store.base import StoreUnavailable

__all__ = ["StoreUnavailable"]

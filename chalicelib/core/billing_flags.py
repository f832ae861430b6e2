"""The flags the rollup decides by, as the core sees them: read-only values, not the settings module.

`chalicelib.settings.Settings` has these fields (and parses them from the stage's environment); the core
asks only for what it reads, so it never imports the settings (tests/architecture/test_layers.py)."""

from __future__ import annotations

from typing import Protocol


class BillingFlags(Protocol):
    @property
    def SHADOW(self) -> bool: ...  # the flags keep the names the stage's environment spells

    @property
    def BILL_FROM(self) -> int: ...

    @property
    def BUCKET_SECONDS(self) -> int: ...

    @property
    def GRACE_SECONDS(self) -> int: ...

    @property
    def ROLLUP_LOOKBACK_BUCKETS(self) -> int: ...

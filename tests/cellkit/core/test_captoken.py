"""The cell's cap-token gate: the edge's minted token verifies; a short secret is named. Every other rule is
a row of the one matrix both verifiers run: tests/security/test_cap_token_matrix.py."""

from __future__ import annotations

import pytest

from cellkit.core.captoken import CapTokenInvalid, verify
from chalicelib.core.cap_tokens import mint
from tests.security.test_cap_token_matrix import NOW, SECRET, claims, hs


def test_the_edges_token_verifies() -> None:
    token = mint(SECRET, "org-1", "pro", "cell-a", NOW - 10)
    got = verify(token, SECRET, NOW, "cell-a")
    assert (got.org_id, got.plan, got.cell_id, got.exp) == ("org-1", "pro", "cell-a", NOW + 290)


def test_short_secret_refused() -> None:
    with pytest.raises(CapTokenInvalid, match="32 bytes"):
        verify(hs(claims(), "short"), "short", NOW, "cell-a")

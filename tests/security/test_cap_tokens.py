"""Cap-tokens on the edge side (chalicelib/cap_tokens.py): the injected clock, and mint's own limits.

Every attack and rule is a row of the one matrix that runs the edge's and the cell's verifiers alike:
tests/security/test_cap_token_matrix.py.
"""

from __future__ import annotations

import pytest

from chalicelib.core.cap_tokens import LEEWAY_SECONDS, MAX_TTL_SECONDS, CapTokenError, mint, verify

SECRET = "edge-session-jwt-secret-of-at-least-32-bytes!"
NOW = 1_795_572_000


def test_a_fresh_token_for_this_cell_verifies() -> None:
    token = mint(SECRET, "org-a", "pro", "cell-eu", NOW)
    got = verify(token, SECRET, NOW, "cell-eu")
    assert (got.org_id, got.plan, got.cell_id, got.exp - got.iat) == ("org-a", "pro", "cell-eu", 300)


def test_the_clock_is_the_injected_one_not_the_machines() -> None:
    # Minted for a `now` far from the wall clock: valid exactly within [iat - leeway, exp + leeway) of the
    # injected clock.
    far = 4_000_000_000
    token = mint(SECRET, "org-a", "free", "cell-eu", far, ttl=60)
    assert verify(token, SECRET, far + 59 + LEEWAY_SECONDS, "cell-eu").plan == "free"
    assert verify(token, SECRET, far - LEEWAY_SECONDS, "cell-eu").plan == "free"
    for at in (far - LEEWAY_SECONDS - 1, far + 60 + LEEWAY_SECONDS):
        with pytest.raises(CapTokenError):
            verify(token, SECRET, at, "cell-eu")


def test_mint_refuses_a_short_secret_and_a_long_lifetime() -> None:
    with pytest.raises(CapTokenError, match="32 bytes"):
        mint("short", "org-a", "pro", "cell-eu", NOW)
    with pytest.raises(CapTokenError, match="ttl"):
        mint(SECRET, "org-a", "pro", "cell-eu", NOW, ttl=MAX_TTL_SECONDS + 1)

"""The operator CLI through typer's runner, against moto tables."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from chalicelib.bootstrap import Container
from chalicelib.core.cap_tokens import verify
from chalicelib.ports import StoreRejected, StoreUnavailable


def test_orgs_put_then_cap_token_mint(svc: Container, env: dict[str, str], run_cli: Callable[..., Any]) -> None:
    put = run_cli(["orgs", "put", "org-a", "--billing-mode", "unified", "--plan", "pro"])
    assert put.exit_code == 0, put.output
    out = run_cli(["cap-token", "mint", "org-a", "--cell", "cell-us", "--ttl", "120"])
    assert out.exit_code == 0, out.output
    token = verify(out.stdout.strip(), env["SESSION_JWT_SECRET"], svc.now(), cell_id="cell-us")
    assert token.plan == "pro" and token.exp == svc.now() + 120


def test_cap_token_for_unknown_org_or_bad_ttl_fails_clearly(svc: Container, run_cli: Callable[..., Any]) -> None:
    unknown = run_cli(["cap-token", "mint", "nobody", "--cell", "c"])
    assert unknown.exit_code == 1 and "not known" in unknown.output
    run_cli(["orgs", "put", "org-a", "--billing-mode", "legacy"])
    bad = run_cli(["cap-token", "mint", "org-a", "--cell", "c", "--ttl", "99999"])
    assert bad.exit_code == 2 and "ttl" in bad.output


def test_orgs_put_rejects_a_bad_mode(svc: Container, run_cli: Callable[..., Any]) -> None:
    out = run_cli(["orgs", "put", "org-a", "--billing-mode", "weird"])
    assert out.exit_code == 2 and "invalid org" in out.output


@pytest.mark.parametrize("error", [StoreRejected("the write was refused"), StoreUnavailable("throttled")])
def test_a_store_error_is_one_line_and_exit_2_not_a_traceback(svc: Container, monkeypatch: pytest.MonkeyPatch,
                                                               error: Exception, run_cli: Callable[..., Any]) -> None:
    """As the cutover commands answer it (tests/integration/test_cutover_cli.py)."""

    def refuse(*_: Any, **__: Any) -> Any:
        raise error

    monkeypatch.setattr(svc.store, "get_org", refuse)
    result = run_cli(["orgs", "get", "org-a"])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
    assert f"error: {error}" in result.output and "Traceback" not in result.output

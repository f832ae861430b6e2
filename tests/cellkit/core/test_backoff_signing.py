from __future__ import annotations

from cellkit.core.backoff import delay
from cellkit.core.signing import body_headers, get_headers
from chalicelib.core.hmac_auth import verify_body, verify_get


def test_backoff_grows_caps_and_jitters() -> None:
    assert delay(0, 0.0) == 0.25 and delay(0, 0.999) < 0.5
    assert delay(3, 0.0) == 2.0 and delay(3, 0.5) == 3.0
    assert delay(50, 0.0) == 30.0 and delay(50, 0.999999) < 60.0
    assert all(delay(n, 0.7) <= delay(n + 1, 0.7) for n in range(20))


def test_signatures_verify_with_the_edges_own_code() -> None:
    body = b'[{"id":"x"}]'
    verify_body({k.lower(): v for k, v in body_headers("s3cret", 1000, body).items()}, body, "s3cret", 1000)
    headers = {k.lower(): v for k, v in get_headers("s3cret", 1000, "/internal/usage-parity", "from=1&to=2").items()}
    verify_get(headers, "/internal/usage-parity", {"from": "1", "to": "2"}, "s3cret", 1000)

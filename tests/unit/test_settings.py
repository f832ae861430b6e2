from __future__ import annotations

import pytest

from chalicelib.settings import SettingsError, load_settings
from tests.conftest import BOTO


def test_defaults_follow_the_contract() -> None:
    s = load_settings({})
    assert (s.SHADOW, s.BILL_FROM, s.BUCKET_SECONDS, s.GRACE_SECONDS, s.WORKER_ENV) == (True, 0, 3600, 600, "dev")
    assert s.sample_retention_seconds > 35 * 86400


@pytest.mark.parametrize(
    "value, shadow", [("false", False), ("true", True), ("False", True), ("0", True), ("", True), ("no", True),
                      (" false ", True), ("false ", True), ("\tfalse", True), ("false\n", True)]
)
def test_shadow_is_off_only_for_exactly_false(value: str, shadow: bool) -> None:
    # No stripping: " false " once sent live (issue 18, item 11).
    assert load_settings({"SHADOW": value}).SHADOW is shadow


@pytest.mark.parametrize("value, warned", [("false", False), ("true", False), (" false ", True), ("TRUE", True),
                                           ("", True)])
def test_a_shadow_value_not_exactly_known_is_warned_about_by_name(value: str, warned: bool) -> None:
    import logging

    from chalicelib.observability import SERVICE

    seen: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = seen.append  # type: ignore[method-assign]
    logging.getLogger(SERVICE).addHandler(handler)
    try:
        load_settings({"SHADOW": value})
    finally:
        logging.getLogger(SERVICE).removeHandler(handler)
    warnings = [r for r in seen if "flag_not_exact" in str(r.msg)]
    assert len(warnings) == warned
    if warned:
        assert (warnings[0].flag, warnings[0].value, warnings[0].levelno) == ("SHADOW", value, logging.WARNING)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "env, names",
    [
        ({"BILL_FROM": "yesterday"}, ["BILL_FROM='yesterday'"]),
        ({"BILL_FROM": "1800"}, ["BILL_FROM=1800", "multiple of BUCKET_SECONDS=3600"]),
        ({"BILL_FROM": "-3600"}, ["BILL_FROM=-3600"]),
        ({"BUCKET_SECONDS": "7"}, ["BUCKET_SECONDS='7'"]),
        ({"BUCKET_SECONDS": "5000"}, ["BUCKET_SECONDS"]),
        ({"GRACE_SECONDS": "60"}, ["GRACE_SECONDS=60", "LATE_MARGIN_SECONDS"]),
        ({"SAMPLE_RETENTION_DAYS": "10"}, ["SAMPLE_RETENTION_DAYS='10'"]),
    ],
)
def test_bad_flags_fail_loudly_naming_flag_and_value(env: dict[str, str], names: list[str]) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(env)
    for name in names:
        assert name in str(err.value)


def test_bill_from_multiple_of_bucket_is_accepted() -> None:
    assert load_settings({"BILL_FROM": "7200", "BUCKET_SECONDS": "900"}).BILL_FROM == 7200


def test_secret_missing_names_it() -> None:
    with pytest.raises(SettingsError, match="EVENT_SECRET"):
        load_settings({}).secret("EVENT_SECRET")
    assert load_settings({"EVENT_SECRET": "s"}).secret("EVENT_SECRET") == "s"


def test_secret_from_ssm(monkeypatch: pytest.MonkeyPatch) -> None:
    """Through Powertools' SSM provider and a real botocore client, its one request checked exactly (a decrypted
    GetParameter of the name under the prefix: the only SSM action tests/security/test_iam_policies.py grants).
    Stubbed, not moto: moto's SSM imports its whole EC2 model first (~1.1 s of one core, for this test alone)."""
    from aws_lambda_powertools.utilities.parameters import base
    from aws_lambda_powertools.utilities.parameters.ssm import SSMProvider
    from botocore.stub import Stubber

    client = BOTO.client("ssm")
    name = "/opensandbox-billing/dev/EVENT_SECRET"
    with Stubber(client) as stub:
        stub.add_response("get_parameter", {"Parameter": {"Name": name, "Type": "SecureString", "Value": "from-ssm"}},
                          {"Name": name, "WithDecryption": True})
        monkeypatch.setitem(base.DEFAULT_PROVIDERS, "ssm", SSMProvider(boto3_client=client))
        s = load_settings({"SECRETS_PARAMETER_PREFIX": "/opensandbox-billing/dev/"})
        assert s.secret("EVENT_SECRET") == "from-ssm"
        stub.assert_no_pending_responses()

"""D9, client side: credentials in a target URL are refused and never shown."""

from __future__ import annotations

import pytest

import jdkit
from jdkit import ClientOptions, ConfigError, RemoteConfig

PASSWORD = "PW-s3cret-in-url"


@pytest.mark.parametrize(
    "target",
    [
        f"grpcs://admin:{PASSWORD}@jd.example.com",
        f"grpc://admin:{PASSWORD}@127.0.0.1:1",
        f"admin:{PASSWORD}@127.0.0.1:1",
        f"grpcs://{PASSWORD}@jd.example.com:443",
    ],
)
def test_userinfo_in_a_target_is_a_config_error_that_does_not_show_it(target: str) -> None:
    for make in (
        lambda: ClientOptions(target=target),
        lambda: RemoteConfig(url=target),
        lambda: jdkit.connect(target),
        lambda: ClientOptions.from_env({"JD_GRPC_URL": target}),
    ):
        with pytest.raises(ConfigError) as info:
            make()
        assert info.value.field == "target"
        assert PASSWORD not in str(info.value) and PASSWORD not in repr(info.value)
        assert "auth=" in str(info.value)
        assert "[redacted]@" in str(info.value)  # redact_url's placeholder, as everywhere

"""Secrets stay out of *other libraries'* DEBUG logs (jdkit._redact).

Each end-to-end test runs twice with real parts: once with registration
switched off (the control: proves hpack / botocore / a request-logging httpx
hook really do log the secret, so the test can fail) and once as shipped,
where no record may contain any secret. Secrets are random per run, so one
registered by another test cannot make the control pass by accident.
"""

from __future__ import annotations

import ast
import base64
import json
import logging
import secrets
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from typing import Any

import aiobotocore.session
import httpx
import pytest

import jdkit._redact
from jdkit._client import JobDistributor
from jdkit._redact import (
    MAX_ENTRIES,
    REDACTED,
    SecretRegistry,
    make_factory,
    register,
)
from jdkit._server import EmbeddedJD
from jdkit._server._auth import StaticTokens
from jdkit.auth import CognitoTokenSource, OAuth2ClientCredentials, StaticToken
from jdkit.auth._cognito import secret_hash
from tests.helpers.auth_helpers import OAuth2Endpoint, cognito_admin, http_server, moto_cognito

THIRD_PARTY = ("hpack", "h2", "grpclib", "botocore", "aiobotocore", "httpx", "httpcore", "app")
REGION = "us-east-1"


@pytest.fixture
def debug_logs(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> pytest.LogCaptureFixture:
    # Another library's logging.config.dictConfig (disable_existing_loggers)
    # may have switched these loggers off earlier in the session: on again.
    monkeypatch.setattr(logging.root.manager, "disable", 0)
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and name.split(".")[0] in THIRD_PARTY:
            monkeypatch.setattr(logger, "disabled", False)
    caplog.set_level(logging.DEBUG)
    for name in THIRD_PARTY:
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def no_registration(monkeypatch: pytest.MonkeyPatch) -> None:
    """The control: jdkit.auth registers nothing and hpack's records are not scrubbed
    by header name (the registry's redaction itself stays installed)."""

    def off(*secrets: str | None, header_prefix: str | None = None) -> None:
        pass

    def keep(record: logging.LogRecord) -> None:
        pass

    monkeypatch.setattr(jdkit._redact, "register", off)
    monkeypatch.setattr(jdkit._redact, "scrub_hpack", keep)


def leaks(records: list[logging.LogRecord], named: dict[str, str]) -> set[tuple[str, str]]:
    """(secret name, logger) for each record whose message or traceback holds a secret."""
    fmt = logging.Formatter()
    found = set()
    for rec in records:
        text = fmt.format(rec)  # message, plus the traceback text if any
        for name, secret in named.items():
            if secret in text:
                found.add((name, rec.name))
    return found


def huffman(value: str) -> bytes:
    from hpack.huffman import HuffmanEncoder
    from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH

    return HuffmanEncoder(REQUEST_CODES, REQUEST_CODES_LENGTH).encode(value.encode())


def hpack_blocks(records: list[logging.LogRecord]) -> list[bytes]:
    """The raw header blocks hpack logged ("Encoded header block to b'..'", "Decoding b'..'")."""
    blocks = []
    for rec in records:
        if rec.name != "hpack.hpack":
            continue
        msg = rec.getMessage()
        for prefix in ("Encoded header block to ", "Decoding "):
            if msg.startswith(prefix) and not msg[len(prefix) :].startswith("<"):
                blocks.append(ast.literal_eval(msg[len(prefix) :]))  # not shown by size only
    return blocks


def names(found: set[tuple[str, str]]) -> set[str]:
    return {name for name, _ in found}


# -- StaticToken through grpclib/hpack, client and (embedded) server side


async def static_token_calls(token: str) -> None:
    async with EmbeddedJD.start(auth=StaticTokens([token])) as srv:
        async with JobDistributor.connect(
            srv.address, auth=StaticToken(token), allow_insecure_auth=True
        ) as jd:
            await jd.list_nodes()
            await jd.list_nodes()


@pytest.mark.asyncio
async def test_static_token_control_hpack_logs_it(
    debug_logs: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    no_registration(monkeypatch)
    token = "tok-" + secrets.token_urlsafe(24)
    await static_token_calls(token)
    found = leaks(debug_logs.records, {"token": token})
    assert ("token", "hpack.hpack") in found  # "Adding b'authorization'=b'Bearer ...'"
    # and Huffman-coded inside the raw header blocks it logs
    assert any(huffman(f"Bearer {token}") in block for block in hpack_blocks(debug_logs.records))


@pytest.mark.asyncio
async def test_static_token_redacted_from_hpack_logs(debug_logs: pytest.LogCaptureFixture) -> None:
    token = "tok-" + secrets.token_urlsafe(24)
    await static_token_calls(token)
    records = debug_logs.records
    assert any(r.name.startswith("hpack") for r in records)  # DEBUG really was on
    assert any(f"Bearer {REDACTED}" in r.getMessage() for r in records if r.name == "hpack.hpack")
    assert leaks(records, {"token": token}) == set()
    blocks = hpack_blocks(records)
    assert not any(huffman(f"Bearer {token}") in block for block in blocks)
    assert token not in debug_logs.text


# -- OAuth2: the application logs its HTTP requests; the token then goes to the JD


async def oauth2_calls(client_auth: str, tag: str) -> dict[str, str]:
    client_id, client_secret = f"cid-{tag}", "s3cr/t+" + secrets.token_urlsafe(18)
    ep = OAuth2Endpoint(client_id, client_secret)
    app_log = logging.getLogger("app.http")

    async def log_request(request: httpx.Request) -> None:  # a common debugging hook
        body = await request.aread()
        app_log.debug("%s %s %s %r", request.method, request.url, dict(request.headers), body)

    with http_server(ep.handle) as base:
        async with httpx.AsyncClient(event_hooks={"request": [log_request]}) as http:
            src = OAuth2ClientCredentials(
                f"{base}/token", client_id, client_secret, http_client=http, client_auth=client_auth
            )
            token = f"access-1-{client_id}"  # what OAuth2Endpoint issues first
            async with EmbeddedJD.start(auth=StaticTokens([token])) as srv:
                async with JobDistributor.connect(
                    srv.address, auth=src, allow_insecure_auth=True
                ) as jd:
                    await jd.list_nodes()
    assert ep.issued == [token]
    quoted = urllib.parse.quote_plus(client_secret)
    basic = base64.b64encode(f"{client_id}:{quoted}".encode()).decode()
    return {"secret": client_secret, "quoted secret": quoted, "basic": basic, "token": token}


@pytest.mark.asyncio
@pytest.mark.parametrize("client_auth", ["basic", "body"])
async def test_oauth2_control_request_log_and_hpack_show_secrets(
    client_auth: str, debug_logs: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    no_registration(monkeypatch)
    named = await oauth2_calls(client_auth, "ctl-" + secrets.token_hex(6))
    found = leaks(debug_logs.records, named)
    assert ("token", "hpack.hpack") in found
    assert ("basic" if client_auth == "basic" else "quoted secret", "app.http") in found


@pytest.mark.asyncio
@pytest.mark.parametrize("client_auth", ["basic", "body"])
async def test_oauth2_secrets_redacted(
    client_auth: str, debug_logs: pytest.LogCaptureFixture
) -> None:
    named = await oauth2_calls(client_auth, secrets.token_hex(6))
    records = debug_logs.records
    assert any(r.name == "app.http" for r in records)
    assert any(r.name.startswith("httpcore") for r in records)
    assert leaks(records, named) == set()
    for secret in named.values():
        assert secret not in debug_logs.text
    blocks = hpack_blocks(records)
    assert not any(huffman(f"Bearer {named['token']}") in b for b in blocks)


# -- Cognito through aiobotocore against moto


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    with moto_cognito() as url:
        yield url


@pytest.fixture
def no_aws_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


async def cognito_calls(url: str, caplog: pytest.LogCaptureFixture) -> dict[str, str]:
    """Log in, then refresh, as a user whose password needs escaping in repr and JSON."""
    admin = cognito_admin(url, REGION)
    core = secrets.token_hex(10)  # the password's part that shows in any escaping
    password = f"Pw'\"\\é-{core}-Aa1!"
    pool = admin.create_user_pool(PoolName=f"redact-{core}")["UserPool"]["Id"]
    client = admin.create_user_pool_client(
        UserPoolId=pool,
        ClientName="secret",
        GenerateSecret=True,
        ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
    )["UserPoolClient"]
    admin.admin_create_user(UserPoolId=pool, Username="bob", TemporaryPassword="Temp-Passw0rd!")
    admin.admin_set_user_password(
        UserPoolId=pool, Username="bob", Password=password, Permanent=True
    )
    # The admin calls above are the test's, not jdkit's: their logs (boto3
    # showing the new client secret and password) are not ours to redact.
    caplog.clear()
    session = aiobotocore.session.get_session()
    answers: list[dict[str, Any]] = []

    def record(parsed: dict[str, Any], **_: Any) -> None:
        answers.append(parsed.get("AuthenticationResult") or {})

    session.register("after-call.cognito-idp.InitiateAuth", record)
    src = CognitoTokenSource(
        client["ClientId"],
        "bob",
        password,
        client["ClientSecret"],
        region=REGION,
        endpoint_url=url,
        session=session,
    )
    try:
        first = await src.fetch()  # USER_PASSWORD_AUTH
        second = await src.fetch()  # REFRESH_TOKEN_AUTH
    finally:
        await src.aclose()
    assert [a["AccessToken"] for a in answers] == [first.value, second.value]
    return {
        "password": core,
        "client secret": client["ClientSecret"],
        "secret hash": secret_hash(client["ClientSecret"], "bob", client["ClientId"]),
        "refresh token": answers[0]["RefreshToken"],
        "access token": first.value,
        "access token 2": second.value,
        "id token": answers[0]["IdToken"],
        "id token 2": answers[1]["IdToken"],
    }


@pytest.mark.asyncio
@pytest.mark.usefixtures("no_aws_credentials")
async def test_cognito_control_botocore_logs_secrets(
    moto_url: str, debug_logs: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    no_registration(monkeypatch)
    named = await cognito_calls(moto_url, debug_logs)
    found = leaks(debug_logs.records, named)
    # request parameters and response bodies
    for name in ("password", "secret hash", "refresh token"):
        assert (name, "botocore.endpoint") in found, name
    for name in ("access token", "access token 2", "id token", "refresh token"):
        assert (name, "botocore.parsers") in found, name


@pytest.mark.asyncio
@pytest.mark.usefixtures("no_aws_credentials")
async def test_cognito_secrets_redacted(
    moto_url: str, debug_logs: pytest.LogCaptureFixture
) -> None:
    named = await cognito_calls(moto_url, debug_logs)
    records = debug_logs.records
    assert any(r.name == "botocore.parsers" for r in records)
    assert any(r.name == "botocore.endpoint" for r in records)
    assert leaks(records, named) == set()
    for secret in named.values():
        assert secret not in debug_logs.text
    body = [r.getMessage() for r in records if r.getMessage().startswith("Response body")]
    assert body and all(f'"AccessToken": "{REDACTED}"' in m for m in body)


# -- the registry and the record factory


def test_registry_is_bounded_least_recently_used_first() -> None:
    reg = SecretRegistry(max_entries=3)
    reg.register(["secret-1", "secret-2", "secret-3"])
    reg.register(["secret-1"])  # used again: now the most recent
    reg.register(["secret-4", "secret-5"])
    assert len(reg) == 3
    assert "secret-1" in reg and "secret-4" in reg and "secret-5" in reg
    assert "secret-2" not in reg and "secret-3" not in reg
    assert reg.redact("secret-2 secret-5") == f"secret-2 {REDACTED}"
    assert "secret-2" not in repr(reg) and "secret-5" not in repr(reg)

    full = SecretRegistry()
    full.register(f"many-secrets-{i}" for i in range(MAX_ENTRIES + 50))
    assert len(full) == MAX_ENTRIES
    assert full.redact("many-secrets-10 ") == "many-secrets-10 "
    assert full.redact(f"many-secrets-{MAX_ENTRIES + 49}") == REDACTED


def test_short_and_empty_strings_are_not_registered() -> None:
    reg = SecretRegistry()
    reg.register(["", None, "abc"])
    assert len(reg) == 0 and reg.patterns == ()


def test_forms_cover_repr_json_and_url_encodings() -> None:
    secret = "a'b\"c\\d é-7f3a9c2e"
    reg = SecretRegistry()
    reg.register([secret])
    body = json.dumps({"PASSWORD": secret}).encode()
    renderings = [
        secret,
        repr(secret),
        repr(secret.encode()),
        repr({"PASSWORD": secret}),
        repr({"body": body}),
        body.decode(),
        urllib.parse.urlencode({"client_secret": secret}),
        urllib.parse.quote(secret, safe=""),
        json.dumps(secret, ensure_ascii=False),
    ]
    for text in renderings:
        assert "7f3a9c2e" not in reg.redact(text), text


class Counted:
    """An argument that counts how often it is rendered."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.renders = 0

    def __str__(self) -> str:
        self.renders += 1
        return self.text


def make_record(factory: Any, msg: str, *args: object, exc_info: Any = None) -> logging.LogRecord:
    record = factory("some.lib", logging.DEBUG, __file__, 1, msg, args, exc_info)
    assert isinstance(record, logging.LogRecord)
    return record


def test_factory_does_nothing_while_the_registry_is_empty() -> None:
    reg = SecretRegistry()
    factory = make_factory(logging.LogRecord, reg)
    arg = Counted("value-one")
    record = make_record(factory, "x=%s", arg)
    assert arg.renders == 0 and record.msg == "x=%s" and record.args == (arg,)

    reg.register(["unrelated-secret"])
    record = make_record(factory, "x=%s", arg)
    assert arg.renders == 1  # rendered once to search it; nothing found, left lazy
    assert record.msg == "x=%s" and record.args == (arg,)

    record = make_record(factory, "x=%s", Counted("has unrelated-secret in it"))
    assert record.msg == f"x=has {REDACTED} in it" and record.args == ()
    assert record.getMessage() == f"x=has {REDACTED} in it"


def test_factory_chains_the_previous_factory() -> None:
    made: list[logging.LogRecord] = []

    def custom(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = logging.LogRecord(*args, **kwargs)
        record.custom_tag = "kept"
        made.append(record)
        return record

    reg = SecretRegistry()
    reg.register(["chained-secret"])
    record = make_record(make_factory(custom, reg), "token %s", "chained-secret")
    assert made == [record] and getattr(record, "custom_tag", None) == "kept"
    assert record.getMessage() == f"token {REDACTED}"


def test_traceback_text_redacted() -> None:
    reg = SecretRegistry()
    reg.register(["exc-secret-123"])
    factory = make_factory(logging.LogRecord, reg)
    try:
        raise RuntimeError("endpoint said: exc-secret-123")
    except RuntimeError:
        record = make_record(factory, "call failed", exc_info=sys.exc_info())
    assert record.exc_info is None and record.exc_text
    assert "exc-secret-123" not in record.exc_text
    assert f"RuntimeError: endpoint said: {REDACTED}" in record.exc_text
    assert "exc-secret-123" not in logging.Formatter().format(record)


def test_exception_logged_through_logging_is_redacted(caplog: pytest.LogCaptureFixture) -> None:
    secret = "exc-" + secrets.token_hex(8)
    register(secret)
    try:
        raise ValueError(f"refused {secret}")
    except ValueError:
        with caplog.at_level(logging.ERROR, logger="some.lib"):
            logging.getLogger("some.lib").exception("call failed (%s)", secret)
    assert "ValueError: refused" in caplog.text and REDACTED in caplog.text
    assert secret not in caplog.text


def test_installed_lazily_once_and_chains_a_custom_factory() -> None:
    """In a fresh interpreter: `import jdkit` installs nothing; the first secret does, once."""
    code = """
import logging
base = logging.getLogRecordFactory()
def custom(*args, **kwargs):
    record = base(*args, **kwargs)
    record.custom_tag = "kept"
    return record
logging.setLogRecordFactory(custom)
import jdkit, jdkit.auth
assert logging.getLogRecordFactory() is custom, "import jdkit installed a factory"
jdkit.auth.StaticToken("tok-in-subprocess")
installed = logging.getLogRecordFactory()
assert installed is not custom, "not installed"
jdkit.auth.StaticToken("tok-another-one")
assert logging.getLogRecordFactory() is installed, "installed twice"
rec = logging.getLogger("x").makeRecord("x", 20, "f", 1, "t=%s", ("tok-in-subprocess",), None)
assert rec.custom_tag == "kept", "previous factory not chained"
assert rec.getMessage() == "t=[redacted]", rec.getMessage()
print("ok")
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


# -- a token given as plain metadata (no token source) is a secret too


async def metadata_token_calls(token: str, per_call: bool) -> None:
    async with EmbeddedJD.start() as srv:
        md = {"authorization": f"Bearer {token}", "x-trace": "not-a-secret"}
        async with JobDistributor.connect(
            srv.address, metadata=None if per_call else md, allow_insecure_auth=True
        ) as jd:
            if per_call:
                await jd.list_nodes(metadata=md)
            else:
                await jd.list_nodes()


@pytest.mark.asyncio
async def test_metadata_token_control_hpack_logs_it(
    debug_logs: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    no_registration(monkeypatch)
    token = "md-" + secrets.token_urlsafe(24)
    await metadata_token_calls(token, per_call=False)
    assert ("token", "hpack.hpack") in leaks(debug_logs.records, {"token": token})


@pytest.mark.asyncio
@pytest.mark.parametrize("per_call", [False, True], ids=["options", "per-call"])
async def test_metadata_token_redacted_from_hpack_logs(
    debug_logs: pytest.LogCaptureFixture, per_call: bool
) -> None:
    token = "md-" + secrets.token_urlsafe(24)
    await metadata_token_calls(token, per_call)
    records = debug_logs.records
    assert any(r.name == "hpack.hpack" for r in records)  # DEBUG really was on
    assert leaks(records, {"token": token}) == set()
    blocks = hpack_blocks(records)
    assert not any(huffman(f"Bearer {token}") in block for block in blocks)
    assert "not-a-secret" in debug_logs.text  # other metadata is left alone


def test_sensitive_metadata_keys() -> None:
    from jdkit._redact import is_sensitive_key

    for key in (
        "authorization",
        "proxy-authorization",
        "x-api-key",
        "x-auth-token",
        "client-secret",
        "db-password",
        "cookie",
        "apikey",
        "x-hmac-key",
        "SIGNING_KEY",
        "x-credentials",
    ):
        assert is_sensitive_key(key), key
    for key in ("x-request-id", "x-trace", "user-agent", "grpc-timeout", "KEY_FILE", "x-keyring"):
        assert not is_sensitive_key(key), key


def test_client_options_repr_hides_metadata_values() -> None:
    from jdkit import ClientOptions

    token = "md-" + secrets.token_urlsafe(24)
    opts = ClientOptions(metadata={"x-api-key": token})
    assert token not in repr(opts) and token not in str(opts)
    assert token in jdkit._redact._registry

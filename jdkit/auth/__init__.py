"""Client-side authentication: token sources, a caching manager, the interceptor.

A JD wants `authorization: Bearer <access token>` on every call. A
`TokenSource` produces tokens (`StaticToken`, `OAuth2ClientCredentials`,
`CognitoTokenSource`, or your own); a `TokenManager` caches one and refreshes it
*before* it expires, with one fetch however many calls find it stale; the
`AuthInterceptor` (installed by `auth=`) puts it on each attempt and, when
the server still answers UNAUTHENTICATED, refreshes and replays the call once.

    from jdkit.auth import StaticToken
    async with jdkit.connect("grpcs://jd.example.com", auth=StaticToken(tok)) as jd: ...

Each concern is its own module, and each optional dependency is imported
only when its source is used: `OAuth2ClientCredentials` needs httpx
(`jdkit[oauth2]`), `CognitoTokenSource` aiobotocore (`jdkit[cognito]`);
importing `jdkit.auth` imports neither. `Clock` is the type of their
`clock=` (and `TokenManager`'s): what `expires_at` is measured on.

Secrets (tokens, passwords, client secrets, refresh tokens) never appear in a
repr, a log line or an exception message: every class here has a redacting
`__repr__`, and messages from token endpoints are scrubbed of them (in every
encoding jdkit builds) because some endpoints echo what they were sent. Other
libraries' DEBUG logs (hpack's header dumps, botocore's request and response
bodies) would show them, so every secret is also registered with jdkit's
log-record redaction: sources register what they are given and what they
receive (before botocore logs it), the manager and the interceptor every
token they hand out or send.

`from_env()` builds a source from these variables (first family set wins;
setting two is an error):

    JD_TOKEN                                   StaticToken
    JD_OAUTH2_TOKEN_URL, JD_OAUTH2_CLIENT_ID,  OAuth2ClientCredentials
      JD_OAUTH2_CLIENT_SECRET,
      [JD_OAUTH2_SCOPE], [JD_OAUTH2_AUDIENCE]
    JD_COGNITO_CLIENT_ID, JD_COGNITO_USERNAME, CognitoTokenSource
      JD_COGNITO_PASSWORD, JD_COGNITO_REGION
      (else AWS_REGION / AWS_DEFAULT_REGION),
      [JD_COGNITO_CLIENT_SECRET], [JD_COGNITO_ENDPOINT_URL]
"""

from jdkit import _exports
from jdkit.auth._cognito import CognitoTokenSource
from jdkit.auth._env import from_env
from jdkit.auth._interceptor import AuthInterceptor
from jdkit.auth._manager import TokenManager
from jdkit.auth._oauth2 import OAuth2ClientCredentials
from jdkit.auth._tokens import Clock, StaticToken, Token, TokenSource

__all__ = [
    "AuthInterceptor",
    "Clock",
    "CognitoTokenSource",
    "OAuth2ClientCredentials",
    "StaticToken",
    "Token",
    "TokenManager",
    "TokenSource",
    "from_env",
]


_exports.publish_all(globals())  # help(), reprs, tracebacks name this module; dir()

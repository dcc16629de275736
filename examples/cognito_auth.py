"""Cognito auth end to end, offline: moto plays AWS Cognito, the embedded JD
accepts only access tokens signed by the user pool's keys.

1. moto's server (ThreadedMotoServer) on loopback; a user pool, an app client
   with a secret and USER_PASSWORD_AUTH, a user with a permanent password.
2. An embedded JD whose `auth=` hook is a `JWKSVerifier` on the pool's JWKS.
3. A call without a token: UNAUTHENTICATED.
4. `CognitoTokenSource` logs in (SECRET_HASH, refresh later) and the client
   puts `authorization: Bearer ...` on every call.
5. The same from the environment (`JD_COGNITO_*`), as `ClientOptions.from_env`
   and the `jdkit` command line read it.

    python examples/cognito_auth.py

Needs the test extras (moto[server,cognitoidp], boto3, PyJWT, httpx) and the
cognito extra (aiobotocore).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys

import boto3  # type: ignore[import-untyped]
from moto.server import ThreadedMotoServer

import jdkit
from jdkit.auth import CognitoTokenSource
from jdkit.pb import node
from jdkit.server import EmbeddedJD, JWKSVerifier

REGION = "us-east-1"
USER, PASSWORD = "deployer", "Corr3ct-Horse-Battery!"


def make_pool(endpoint: str) -> dict[str, str]:
    """An admin (signed, dummy keys: moto accepts any) creates the pool and user."""
    idp = boto3.client(
        "cognito-idp",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="moto",
        aws_secret_access_key="moto",
    )
    pool = idp.create_user_pool(PoolName="jd-operators")["UserPool"]["Id"]
    app = idp.create_user_pool_client(
        UserPoolId=pool,
        ClientName="jdkit",
        GenerateSecret=True,
        ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
    )["UserPoolClient"]
    idp.admin_create_user(
        UserPoolId=pool, Username=USER, TemporaryPassword="Temp-0rary!", MessageAction="SUPPRESS"
    )
    idp.admin_set_user_password(UserPoolId=pool, Username=USER, Password=PASSWORD, Permanent=True)
    return {"pool": pool, "client_id": app["ClientId"], "client_secret": app["ClientSecret"]}


async def main() -> None:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    try:
        host, port = moto.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        ids = make_pool(endpoint)
        verifier = JWKSVerifier(
            f"{endpoint}/{ids['pool']}/.well-known/jwks.json",
            issuer=f"https://cognito-idp.{REGION}.amazonaws.com/{ids['pool']}",
        )
        async with EmbeddedJD.start(auth=verifier) as srv:
            # no token: refused
            async with jdkit.JobDistributor.connect(srv.address) as anonymous:
                try:
                    await anonymous.list_nodes()
                    raise AssertionError("a call without a token got through")
                except jdkit.UnauthenticatedError as exc:
                    print(f"without a token: {exc.code.name}: {exc.message}")

            # a Cognito login: tokens fetched, cached and refreshed by the client
            source = CognitoTokenSource(
                ids["client_id"],
                USER,
                PASSWORD,
                ids["client_secret"],
                region=REGION,
                endpoint_url=endpoint,
            )
            # plaintext is fine on loopback; say so explicitly, tokens are secrets
            async with jdkit.JobDistributor.connect(
                srv.address, auth=source, allow_insecure_auth=True
            ) as jd:
                resp = await jd.register_node(
                    node.RegisterNodeRequest(name="authed", public_key=os.urandom(32).hex())
                )
                assert resp.node is not None
                print(f"with a Cognito token: registered {resp.node.id}")

            # the same from the environment, e.g. in CI or for the CLI
            env = {
                "JD_GRPC_URL": srv.address,
                "JD_ALLOW_INSECURE_AUTH": "1",
                "JD_COGNITO_CLIENT_ID": ids["client_id"],
                "JD_COGNITO_CLIENT_SECRET": ids["client_secret"],
                "JD_COGNITO_USERNAME": USER,
                "JD_COGNITO_PASSWORD": PASSWORD,
                "JD_COGNITO_REGION": REGION,
                "JD_COGNITO_ENDPOINT_URL": endpoint,
            }
            async with jdkit.RemoteProvider.from_env(env) as jd:
                total = (await jd.list_nodes()).total_count
                print(f"RemoteProvider.from_env: {total} node(s)")
                assert total == 1

            cli = await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-m", "jdkit", "--json", "nodes", "list"],
                env={**os.environ, **env},
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert cli.returncode == 0, cli.stderr
            names = [n["name"] for n in json.loads(cli.stdout)["nodes"]]
            print(f"jdkit nodes list (JD_COGNITO_* in the environment): {names}")
            assert names == ["authed"]
        await verifier.aclose()
    finally:
        moto.stop()


if __name__ == "__main__":
    asyncio.run(main())

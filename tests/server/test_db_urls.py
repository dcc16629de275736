"""D9, server side: database URLs are recognised by scheme (drivers included)
and their passwords never reach an error or a repr."""

from __future__ import annotations

import os
import pathlib

import pytest

from jdkit import ConfigError
from jdkit.server import EmbeddedJD
from tests.helpers.server_fixtures import postgres_cluster

PASSWORD = "PW-s3cret-never-shown"
SECRET = "0" * 64  # a CSA secret, so no dev-secret choice is involved


@pytest.mark.asyncio
@pytest.mark.parametrize("scheme", ["postgresql+psycopg", "postgres", "POSTGRESQL"])
async def test_postgres_urls_with_a_driver_or_the_short_scheme_open_postgres(
    scheme: str, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with postgres_cluster() as pg:
        url = pg.new_database().replace(
            "postgresql://postgres@", f"{scheme}://postgres:{PASSWORD}@"
        )
        async with EmbeddedJD.start(db=url, csa_secret=SECRET) as srv:
            assert srv._db is not None and srv._db.kind == "postgres"
            assert PASSWORD not in repr(srv)
    assert os.listdir(tmp_path) == []  # not taken for a SQLite file name


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "url",
    [
        f"postgresql+psycopg://jd:{PASSWORD}@127.0.0.1:1/jd",
        f"postgres://jd:{PASSWORD}@127.0.0.1:1/jd",
        f"postgresql://jd:{PASSWORD}@127.0.0.1:1/jd?sslmode=bogus",
        f"mysql://jd:{PASSWORD}@127.0.0.1/jd",
    ],
)
async def test_a_database_that_cannot_be_opened_does_not_show_its_password(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        await EmbeddedJD.start(db=url, csa_secret=SECRET)
    assert info.value.field == "db"
    text = str(info.value)
    assert PASSWORD not in text and "PW-s3cret" not in text, text
    assert info.value.__cause__ is None  # the driver's own message is not chained

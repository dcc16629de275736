"""Developer tasks. `./dev` builds the one project venv (.venv) and runs these in it.

- `nox -s tests`: the test suite (arguments after `--` go to pytest)
- `nox -s lint typecheck`: ruff (check and format); mypy --strict on jdkit/ and
  scripts/, and on tests/ without mandatory annotations (pyproject.toml)
- `nox -s protos`: regenerate jdkit/_proto from proto/, then the fast codec from jdkit/_proto
- `nox -s protos_check`: fail when jdkit/_proto or jdkit/_codec/_generated.py differs
  from a fresh generation
- `nox -s bench`: benchmarks; writes docs/benchmarks.md
- `nox -s example`: the quickstart example against the embedded JD
- `nox -s docs`: the docs site (mkdocs + mkdocstrings) with --strict, into site/
"""

from __future__ import annotations

import nox

# Every session runs in the environment nox itself runs in (./dev's .venv),
# so the heavy test dependencies are installed once, not once per session.
nox.options.default_venv_backend = "none"
nox.options.sessions = ["lint", "typecheck", "protos_check", "docs", "tests"]


@nox.session
def tests(session: nox.Session) -> None:
    session.run("python", "-m", "pytest", *(session.posargs or ["-q"]))


@nox.session
def lint(session: nox.Session) -> None:
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    session.run("mypy")
    # a user's script over the task helpers: strict, and no `X | None` to narrow
    session.run("mypy", "--strict", "tests/typing/user_script.py")


@nox.session
def protos(session: nox.Session) -> None:
    session.run("python", "scripts/gen_protos.py")
    session.run("python", "scripts/gen_fastcodec.py")


@nox.session
def protos_check(session: nox.Session) -> None:
    session.run("python", "scripts/gen_protos.py", "--check")
    session.run("python", "scripts/gen_fastcodec.py", "--check")


@nox.session
def bench(session: nox.Session) -> None:
    session.run("python", "-m", "benchmarks", *session.posargs)


@nox.session
def example(session: nox.Session) -> None:
    session.run("python", "examples/quickstart.py")


@nox.session
def docs(session: nox.Session) -> None:
    # --strict: a broken link, a missing page or an unresolvable reference fails
    session.run("mkdocs", "build", "--strict", "--site-dir", "site", *session.posargs)

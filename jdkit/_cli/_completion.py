"""`jdkit completion`: the shell completion script."""

from __future__ import annotations

import click

from jdkit._cli._app import state


@click.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> int:
    """Print the shell completion script: eval "$(jdkit completion bash)"."""
    from click.shell_completion import get_completion_class

    from jdkit._cli import cli

    state().refuse_connection_flags("completion")
    cls = get_completion_class(shell)
    assert cls is not None
    click.echo(cls(cli, {}, "jdkit", "_JDKIT_COMPLETE").source())
    return 0

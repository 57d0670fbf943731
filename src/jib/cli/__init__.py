"""The `jib` command line: `jib chat`, `jib run`, `jib log`, `jib show`, `jib export`, `jib runs`,
`jib compare`, `jib report`, `jib id`, `jib spec render` and `jib spec import`. Run `jib --help`
for the details.

This package imports typer, rich and (when a command needs the store) SQLAlchemy; `import jib`
imports none of them.
"""

from jib.cli._startup import paused_collector

with paused_collector():  # see jib.cli._startup
    from jib.cli._app import app, main

__all__ = ["app", "main"]

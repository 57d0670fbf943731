"""`python -m jib.cli`: the same as the `jib` command."""

from jib.cli import main

main()

"""`python -m templater.cli`: the same as the `templater` command."""

from templater.cli import main

main()

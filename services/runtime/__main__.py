"""Allow `python -m services.runtime` as an alias of the `fengqiao` command."""

from services.cli import main

main()

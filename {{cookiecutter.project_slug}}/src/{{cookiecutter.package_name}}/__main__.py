"""`python -m <package>` runs the CLI, so a fresh checkout works before the script is installed."""

from .cli import main

main()

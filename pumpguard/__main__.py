"""``python -m pumpguard`` runs the CLI."""

from pumpguard.cli import main

main()

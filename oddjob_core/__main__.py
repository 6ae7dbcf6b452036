"""``python -m oddjob_core`` runs the CLI (same as the ``oddjob`` command)."""

from .cli import main

main()

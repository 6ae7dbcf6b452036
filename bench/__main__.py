"""``python -m bench``: run the benchmark matrix (see bench/README.md)."""

from bench.cli import main

raise SystemExit(main())

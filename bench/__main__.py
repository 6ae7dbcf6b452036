"""``python -m bench``: the benchmark matrix; ``--scale``: the scale curves; ``--executors``: executors."""

import sys

if "--scale" in sys.argv[1:]:
    from bench.scale import main as scale_main

    raise SystemExit(scale_main([a for a in sys.argv[1:] if a != "--scale"]))

if "--executors" in sys.argv[1:]:
    from bench.executors import main as executors_main

    raise SystemExit(executors_main([a for a in sys.argv[1:] if a != "--executors"]))

from bench.cli import main

raise SystemExit(main())

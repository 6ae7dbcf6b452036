"""``python -m bench``: the benchmark matrix; ``--scale``: the scale curves; ``--executors``:
executors; ``--plugins``: the installed plugins' cost to the engine (A/B)."""

import sys

if "--scale" in sys.argv[1:]:
    from bench.scale import main as scale_main

    raise SystemExit(scale_main([a for a in sys.argv[1:] if a != "--scale"]))

if "--executors" in sys.argv[1:]:
    from bench.executors import main as executors_main

    raise SystemExit(executors_main([a for a in sys.argv[1:] if a != "--executors"]))

if "--plugins" in sys.argv[1:]:
    from bench.plugin_cost import main as plugins_main

    raise SystemExit(plugins_main([a for a in sys.argv[1:] if a != "--plugins"]))

from bench.cli import main

raise SystemExit(main())

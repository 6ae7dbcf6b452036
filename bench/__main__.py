"""``python -m bench``: the benchmark matrix; ``--scale``: the scale curves; ``--executors``:
executors; ``--plugins``: the installed plugins' cost to the engine (A/B); ``--producers``: 16
producer threads vs one, beside the ceiling of the enqueue path itself."""

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

if "--producers" in sys.argv[1:]:
    from bench.producers import main as producers_main

    raise SystemExit(producers_main([a for a in sys.argv[1:] if a != "--producers"]))

from bench.cli import main

raise SystemExit(main())

"""``python -m bench``: the benchmark matrix; ``python -m bench --scale``: the scale curves."""

import sys

if "--scale" in sys.argv[1:]:
    from bench.scale import main as scale_main

    raise SystemExit(scale_main([a for a in sys.argv[1:] if a != "--scale"]))

from bench.cli import main

raise SystemExit(main())

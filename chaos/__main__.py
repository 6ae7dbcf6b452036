"""``python -m chaos``: see ``chaos.run``."""

import sys

from .run import main

sys.exit(main())

"""``python -m routerx.server [--port P] ...``: the same as ``routerx serve``."""

import sys

from . import main

sys.exit(main())

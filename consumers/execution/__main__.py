"""``python -m consumers.execution``: the same as ``ibstream run execution``."""

import sys

from consumers.execution import main

raise SystemExit(main(sys.argv[1:]))

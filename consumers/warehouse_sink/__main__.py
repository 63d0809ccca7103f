"""``python -m consumers.warehouse_sink``."""

from __future__ import annotations

import sys

from consumers.warehouse_sink import main

sys.exit(main(sys.argv[1:]))

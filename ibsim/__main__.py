"""``python -m ibsim``."""

import sys

from ibsim.cli import main

sys.exit(main())

"""``python -m nodeprune``: the ``nodeprune`` command."""

import sys

from .cli import main

sys.exit(main())

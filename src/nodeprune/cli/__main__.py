"""``python -m nodeprune.cli``: the ``nodeprune`` command."""

import sys

from . import main

sys.exit(main())

"""``python -m gateway.cli``: the ``runcast`` command (``--workers`` starts its workers so)."""

import sys

from gateway.cli import main

sys.exit(main())

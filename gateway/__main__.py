"""``python -m gateway``: the ``runcast`` command."""

import sys

from gateway.cli import main

sys.exit(main())

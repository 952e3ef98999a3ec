"""``python -m support.book``: see :mod:`support.book`."""

import sys

from support.book.cli import main

sys.exit(main())

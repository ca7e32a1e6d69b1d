"""``python -m stgconv ...`` (and ``torchrun ... -m stgconv train ...``): the ``stgconv``
command."""

import sys

from stgconv.cli import main

if __name__ == "__main__":  # imported (a documentation tool's walk), it runs no command
    sys.exit(main())

"""``python -m stgconv ...`` (and ``torchrun ... -m stgconv train ...``): the ``stgconv``
command."""

import sys

from stgconv.cli import main

sys.exit(main())

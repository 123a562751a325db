"""``python -m experiments.awa2_svgg19``: the main command (see :mod:`.main`)."""

import sys

from experiments.awa2_svgg19.main import main

if __name__ == "__main__":
    sys.exit(main())

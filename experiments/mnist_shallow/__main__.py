"""``python -m experiments.mnist_shallow``: the main command (see :mod:`.main`)."""

import sys

from experiments.mnist_shallow.main import main

if __name__ == "__main__":
    sys.exit(main())

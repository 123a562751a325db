"""``python experiments/awa2_svgg19.py --data folder:PATH [--weights vgg19.npz] ...``

The launcher of the package :mod:`experiments.awa2_svgg19` (config, main, report), runnable
as a file from the repository root. Python imports the package, not this file, under the name
``experiments.awa2_svgg19`` (a package directory wins over a module of the same name).
"""

import pathlib
import sys

if __name__ == "__main__":  # worker processes re-import this file: start work only here
    root = str(pathlib.Path(__file__).resolve().parents[1])
    if root not in sys.path:
        sys.path.insert(0, root)
    from experiments.awa2_svgg19.main import main

    sys.exit(main())

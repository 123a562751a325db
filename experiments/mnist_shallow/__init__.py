"""The SVEBI paper's MNIST experiment (shallow SNN): ``python -m experiments.mnist_shallow``.

Split as flax's examples are: :mod:`.config` (the command line, validated before any work),
:mod:`.main` (the pipeline: the shared stages of :mod:`experiments.common.stages` in order)
and :mod:`.report` (``report.md``).
"""

from experiments.mnist_shallow.config import ExperimentConfig, parse_args
from experiments.mnist_shallow.main import main, run

__all__ = ["ExperimentConfig", "main", "parse_args", "run"]

"""The SVEBI paper's AwA2 experiment (SVGG19): ``python experiments/awa2_svgg19.py``.

Split as flax's examples are: :mod:`.config` (the command line, checked before any work),
:mod:`.main` (the pipeline: the shared stages of :mod:`experiments.common.stages` on streamed
data) and :mod:`.report` (``report.md``). ``python -m experiments.awa2_svgg19`` runs it too.
"""

from experiments.awa2_svgg19.config import ExperimentConfig, parse_args, prepare
from experiments.awa2_svgg19.main import main, run

__all__ = ["ExperimentConfig", "main", "parse_args", "prepare", "run"]

"""Evaluation metrics: insertion/deletion (RISE), ROAD, filter ablation, sanity checks.

The metrics of explanation methods take an attribution function
``attr_fn(params, images, target) -> [B, H, W]`` (:mod:`svebi_jax.attribution`) and say which
direction is better (``higher_is_better``).
"""

from svebi_jax.metrics.ablation import AblationResult, ablation_curve, random_like_masks
from svebi_jax.metrics.insdel import (
    CausalMetricResult,
    InsertionDeletion,
    auc,
    auto_substrate,
    gaussian_blur,
    insertion_deletion,
)
from svebi_jax.metrics.remove_and_debias import (
    ROADResult,
    noisy_linear_impute,
    road,
)
from svebi_jax.metrics.sanity import (
    RandomizationCheck,
    model_randomization_check,
    randomize_params,
    spearman_rank_correlation,
)

__all__ = [
    "AblationResult",
    "CausalMetricResult",
    "InsertionDeletion",
    "ROADResult",
    "RandomizationCheck",
    "ablation_curve",
    "auc",
    "gaussian_blur",
    "auto_substrate",
    "insertion_deletion",
    "model_randomization_check",
    "noisy_linear_impute",
    "random_like_masks",
    "randomize_params",
    "road",
    "spearman_rank_correlation",
]

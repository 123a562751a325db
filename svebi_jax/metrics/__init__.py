"""Evaluation metrics: insertion/deletion (RISE), filter ablation, sanity checks."""

from svebi_jax.metrics.ablation import AblationResult, ablation_curve, random_like_masks
from svebi_jax.metrics.insdel import CausalMetricResult, auc, gaussian_blur, insertion_deletion
from svebi_jax.metrics.sanity import (
    model_randomization_check,
    randomize_params,
    spearman_rank_correlation,
)

__all__ = [
    "AblationResult",
    "CausalMetricResult",
    "ablation_curve",
    "auc",
    "gaussian_blur",
    "insertion_deletion",
    "model_randomization_check",
    "random_like_masks",
    "randomize_params",
    "spearman_rank_correlation",
]

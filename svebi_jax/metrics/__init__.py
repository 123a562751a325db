"""Evaluation metrics: insertion/deletion (RISE), ROAD, filter ablation, sanity checks, and
Quantus's standard metrics (pixel-flipping, region perturbation, faithfulness and monotonicity
correlation, max-sensitivity, sparseness, complexity, random logit).

The metrics of explanation methods take an attribution function
``attr_fn(params, images, target) -> [B, H, W]`` (:mod:`svebi_jax.attribution`) and say which
direction is better (``higher_is_better``).
"""

from svebi_jax.metrics.ablation import AblationResult, ablation_curve, random_like_masks
from svebi_jax.metrics.complexity import complexity, sparseness
from svebi_jax.metrics.faithfulness import (
    CurveResult,
    ScoreResult,
    faithfulness_correlation,
    monotonicity_correlation,
    pixel_flipping,
    region_perturbation,
)
from svebi_jax.metrics.insdel import (
    CausalMetricResult,
    InsertionDeletion,
    auc,
    auto_substrate,
    gaussian_blur,
    insertion_deletion,
)
from svebi_jax.metrics.randomisation import RandomLogitResult, random_logit
from svebi_jax.metrics.remove_and_debias import (
    ROADResult,
    noisy_linear_impute,
    road,
)
from svebi_jax.metrics.robustness import max_sensitivity
from svebi_jax.metrics.sanity import (
    RandomizationCheck,
    model_randomization_check,
    randomize_params,
    spearman_rank_correlation,
)

__all__ = [
    "CurveResult",
    "RandomLogitResult",
    "ScoreResult",
    "complexity",
    "faithfulness_correlation",
    "max_sensitivity",
    "monotonicity_correlation",
    "pixel_flipping",
    "random_logit",
    "region_perturbation",
    "sparseness",
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

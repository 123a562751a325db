"""svebi_jax: JAX-native interpretation and explanation of spiking neural networks (SVEBI).

One way through, from a trained network to scored explanations:

.. code-block:: python

    import svebi_jax as sv

    apply_fn, params = sv.functional(model)                   # any ApplyFn works
    rel = sv.fit_relevance(apply_fn, params, train_images, mu=2.0)   # -> sv.Relevance
    rel.filters[3]["conv2"]                                   # class 3's relevant channels
    attr_fn = rel.attribution()                               # attr_fn(params, images, target)
    scores = sv.metrics.insertion_deletion(attr_fn, apply_fn, params, test_images)
    rel.save("relevance.npz")        # back: sv.Relevance.load("relevance.npz", apply_fn=apply_fn)

The pieces (all pure functions over time-major ``[T, B, ...]`` arrays and pytrees):

- :func:`fit_relevance` → :class:`Relevance` — the relevant filters of every class (filter
  responses :func:`compute_responses` → μ-lasso :func:`mu_lasso` → :func:`masks_from_weights`
  / :func:`relevant_filters`), their SVEBI attribution, a file format;
  :func:`interpret_filters` shows what a filter responds to.
- :mod:`svebi_jax.attribution` — every explanation method as
  ``attr_fn(params, images [B, H, W, C], target [B] | None) -> [B, H, W]`` (the one public
  way to get a method); :mod:`svebi_jax.metrics` scores them (an ``attr_fn`` or precomputed
  maps); :mod:`svebi_jax.methods` holds the implementations (map functions named for what
  they return).
- :func:`lif_scan`, :func:`integrator_readout` — LIF dynamics (:mod:`svebi_jax.lif`);
  :func:`run_network` and the layer specs — feed-forward SNNs (:mod:`svebi_jax.layers`).
- :mod:`svebi_jax.sharding` — one device mesh; ``mesh=`` makes training, responses, maps and
  metrics data parallel. :mod:`svebi_jax.resume` — resumable training and extraction.
- :func:`from_nir` / :func:`to_nir` — networks from and to other SNN frameworks via NIR
  (:mod:`svebi_jax.interop`).

One vocabulary: ``target`` is the class to explain, ``num_steps`` the network's ``T``,
``path_steps`` the points of integrated gradients' path, ``pixels_per_step`` the pixels
insertion/deletion changes per step.

Models are thin Flax NNX definitions (:mod:`svebi_jax.models`); :func:`functional` turns one
into ``(apply_fn, params)`` (:class:`~svebi_jax.protocols.ApplyFn`) for everything above.
"""

__version__ = "0.1.0"

from svebi_jax import (
    attribution,
    data,
    interop,
    methods,
    metrics,
    models,
    resume,
    sharding,
    train,
    viz,
)
from svebi_jax.heatmaps import combine, upsample_aligned, upsample_stretch
from svebi_jax.interop.nir import NIRNetwork, from_nir, to_nir
from svebi_jax.interpret import interpret_filters, receptive_field_box, top_k_crops
from svebi_jax.lasso import LassoResult, mu_lasso
from svebi_jax.layers import (
    LIF,
    AvgPool,
    Conv,
    Dense,
    Flatten,
    Geometry,
    MaxPool,
    Scale,
    SNNConfig,
    SNNOutput,
    SumPool,
    layer_geometry,
    run_network,
)
from svebi_jax.lif import integrator_readout, lif_scan, lif_step, spike_function
from svebi_jax.models import ShallowSNN, SpikingNetwork, functional
from svebi_jax.protocols import ApplyFn, ModelInfo
from svebi_jax.relevance import (
    Relevance,
    fit_relevance,
    has_relevant_filters,
    layer_distribution,
    masks_from_weights,
    relevant_filters,
)
from svebi_jax.responses import FilterIndex, Responses, compute_responses, filter_responses

__all__ = [
    "LIF",
    "ApplyFn",
    "ModelInfo",
    "AvgPool",
    "Conv",
    "Dense",
    "FilterIndex",
    "Flatten",
    "Geometry",
    "LassoResult",
    "MaxPool",
    "NIRNetwork",
    "Relevance",
    "Responses",
    "SNNConfig",
    "SNNOutput",
    "Scale",
    "SumPool",
    "ShallowSNN",
    "SpikingNetwork",
    "__version__",
    "attribution",
    "interop",
    "methods",
    "data",
    "metrics",
    "models",
    "resume",
    "sharding",
    "train",
    "viz",
    "combine",
    "compute_responses",
    "filter_responses",
    "fit_relevance",
    "from_nir",
    "functional",
    "has_relevant_filters",
    "integrator_readout",
    "interpret_filters",
    "layer_distribution",
    "layer_geometry",
    "lif_scan",
    "masks_from_weights",
    "lif_step",
    "mu_lasso",
    "receptive_field_box",
    "relevant_filters",
    "run_network",
    "spike_function",
    "to_nir",
    "top_k_crops",
    "upsample_aligned",
    "upsample_stretch",
]

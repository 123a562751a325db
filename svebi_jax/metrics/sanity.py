"""Model-randomization sanity check for saliency methods (Adebayo et al., 2018).

Adebayo, Gilmer, Muelly, Goodfellow, Hardt and Kim, "Sanity Checks for Saliency Maps"
(NeurIPS 2018): an explanation that depends on what the model learned must change when the
model's parameters are replaced by random ones. The check computes the maps of the trained
and of a randomized model on the same images and reports their Spearman rank correlation
per image (high correlation = the method is insensitive to the model = it fails the check).

- :func:`spearman_rank_correlation`: per-image Spearman :math:`\\rho` in JAX.
- :func:`randomize_params`: re-initializes every (or some: ``layers``, for Adebayo et al.'s
  cascading randomization) parameter leaf.
- :func:`model_randomization_check`: the whole check.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from svebi_jax import _validation as V
from svebi_jax._validation import is_tracer as _is_tracer

__all__ = [
    "RANDOM_INITS",
    "TIE_METHODS",
    "RandomizationCheck",
    "model_randomization_check",
    "randomize_params",
    "rankdata",
    "spearman_rank_correlation",
]

Array = jax.Array

TIE_METHODS: tuple[str, ...] = ("average", "ordinal")
RANDOM_INITS: tuple[str, ...] = ("like", "permute")


def rankdata(x: Array, *, ties: str = "average") -> Array:
    """Ranks (1-based) along the last axis, like :func:`scipy.stats.rankdata`.

    ``"average"`` gives tied values the mean of the ranks they span (scipy's default, so
    :func:`spearman_rank_correlation` equals :func:`scipy.stats.spearmanr` with ties too):
    with :math:`s` the sorted values, the rank of :math:`x_i` is
    :math:`(\\mathrm{left}_i + \\mathrm{right}_i + 1)/2`, where ``left``/``right`` are its
    ``searchsorted`` positions in :math:`s`. ``"ordinal"`` is the argsort of a stable argsort
    plus one (ties broken by position).

    Args:
      x: ``[..., N]`` real array.
      ties: ``"average"`` (default) or ``"ordinal"``.

    Returns:
      ``[..., N]`` float32 ranks in ``[1, N]``.
    """
    if ties not in TIE_METHODS:
        raise ValueError(f"ties must be one of {TIE_METHODS}, got {ties!r}")
    x = jnp.asarray(x)
    if ties == "ordinal":
        order = jnp.argsort(x, axis=-1, stable=True)
        return jnp.argsort(order, axis=-1, stable=True).astype(jnp.float32) + 1.0
    flat = x.reshape(-1, x.shape[-1])

    def one(v):
        s = jnp.sort(v)
        left = jnp.searchsorted(s, v, side="left")
        right = jnp.searchsorted(s, v, side="right")
        return (left + right + 1).astype(jnp.float32) / 2.0

    return jax.vmap(one)(flat).reshape(x.shape)


def spearman_rank_correlation(a: Array, b: Array, *, ties: str = "average") -> Array:
    """Per-map Spearman rank correlation of two batches of maps.

    .. math::
        \\rho = \\frac{\\sum_p (r^a_p - \\bar r^a)(r^b_p - \\bar r^b)}
          {\\sqrt{\\sum_p (r^a_p - \\bar r^a)^2 \\sum_p (r^b_p - \\bar r^b)^2}}

    over the :math:`HW` pixels :math:`p`, with :math:`r` the :func:`rankdata` ranks. A
    constant map has no rank variance and gives NaN, as in :func:`scipy.stats.spearmanr`.

    Args:
      a: ``[B, H, W]`` real maps (any ``[B, ...]`` works: all trailing axes are flattened).
      b: maps of the same shape.
      ties: ``"average"`` (default, scipy's) or ``"ordinal"``.

    Returns:
      ``[B]`` float32 correlations in [-1, 1] (NaN for constant maps).

    Raises:
      ValueError: on mismatched or too small shapes, an unknown ``ties``, or NaN values.
    """
    a = jnp.asarray(a)
    b = jnp.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape, got {a.shape} and {b.shape}")
    if a.ndim < 2 or a.shape[0] < 1 or int(np.prod(a.shape[1:])) < 2:
        raise ValueError(f"a must be [B, H, W] maps with at least 2 pixels, got shape {a.shape}")
    for name, v in (("a", a), ("b", b)):
        if not _is_tracer(v) and bool(jnp.any(jnp.isnan(v))):
            raise ValueError(f"{name} must not contain NaN")
    ra = rankdata(a.reshape(a.shape[0], -1), ties=ties)
    rb = rankdata(b.reshape(b.shape[0], -1), ties=ties)
    ra = ra - ra.mean(axis=-1, keepdims=True)
    rb = rb - rb.mean(axis=-1, keepdims=True)
    num = (ra * rb).sum(axis=-1)
    den = jnp.sqrt((ra * ra).sum(axis=-1) * (rb * rb).sum(axis=-1))
    rho = jnp.where(den > 0, num / jnp.where(den > 0, den, 1.0), jnp.nan)
    # NaN maps (checked when concrete; a flag from upstream under jit) rank as numbers
    # otherwise: their correlation is NaN, never a plausible value.
    valid = ~jnp.any(jnp.isnan(a.reshape(a.shape[0], -1)), -1) & ~jnp.any(
        jnp.isnan(b.reshape(b.shape[0], -1)), -1
    )
    return V.flag_rows(rho, valid)


def _path_names(path) -> set[str]:
    names = set()
    for entry in path:
        for attr in ("key", "name", "idx"):
            if hasattr(entry, attr):
                names.add(str(getattr(entry, attr)))
    return names


@functools.partial(jax.jit, static_argnames=("init", "zero_std_scale"))
def _randomize_leaves(leaves, key, *, init, zero_std_scale):
    sizes = [int(arr.size) for arr in leaves]
    offsets = np.cumsum([0] + sizes)
    if init == "permute":
        # One uniform draw for all leaves; each leaf is permuted by the argsort of its slice.
        u = jax.random.uniform(key, (int(offsets[-1]),))
        return [
            arr.reshape(-1)[jnp.argsort(u[offsets[i] : offsets[i + 1]])].reshape(arr.shape)
            for i, arr in enumerate(leaves)
        ]
    noise = jax.random.normal(key, (int(offsets[-1]),), jnp.float32)
    out = []
    for i, arr in enumerate(leaves):
        mean = arr.mean()
        std = arr.std()
        scale = jnp.where(std > 0, std, jnp.maximum(jnp.abs(mean), zero_std_scale))
        eps = noise[offsets[i] : offsets[i + 1]].reshape(arr.shape).astype(arr.dtype)
        out.append(mean + scale * eps)
    return out


def randomize_params(
    params: Any,
    key: Array,
    *,
    init: str = "like",
    init_fn: Callable[[Array], Any] | None = None,
    layers: Sequence[str] | None = None,
    zero_std_scale: float = 0.01,
) -> Any:
    """Re-initializes parameter leaves with fresh random values of the same shape and scale.

    - ``init="like"`` (default): each float leaf :math:`w` becomes
      :math:`\\mathrm{mean}(w) + \\mathrm{std}(w)\\,\\varepsilon`, :math:`\\varepsilon \\sim
      \\mathcal{N}(0, 1)` i.i.d.; a constant leaf (e.g. zero-initialized biases, std 0) uses
      the scale ``max(|mean(w)|, zero_std_scale)`` instead, so every leaf changes.
    - ``init="permute"``: each float leaf's entries are randomly permuted (exactly the same
      value distribution; constant leaves stay unchanged).
    - ``init_fn``: ``init_fn(key) -> params`` re-runs the model's own initializer with a new
      key (e.g. ``lambda k: functional(ShallowSNN(rngs=nnx.Rngs(k)))[1]``); takes precedence
      over ``init``. Its result must have the same tree structure and leaf shapes.

    Non-float leaves (integers, PRNG keys) are kept. One random vector is drawn from ``key`` for
    all randomized leaves (sliced in the order of :func:`jax.tree_util.tree_leaves`), so the
    same ``key`` gives the same result.

    Args:
      params: the parameter pytree (dict, ``nnx.State``, ...).
      key: a PRNG key.
      init: ``"like"`` or ``"permute"``.
      init_fn: optional ``key -> params`` initializer.
      layers: optional names; only leaves whose path contains one of them are randomized
        (e.g. ``["fc2"]``, then ``["fc2", "fc1"]``, ... for cascading randomization).
      zero_std_scale: scale used for constant leaves with zero mean (``"like"``).

    Returns:
      A pytree like ``params`` with the selected leaves randomized.

    Raises:
      ValueError: on an unknown ``init``, a ``layers`` entry matching no leaf, or an
        ``init_fn`` result with another structure or shapes.
    """
    if init not in RANDOM_INITS:
        raise ValueError(f"init must be one of {RANDOM_INITS}, got {init!r}")
    if not (np.isfinite(zero_std_scale) and zero_std_scale > 0):
        raise ValueError(f"zero_std_scale must be a finite number > 0, got {zero_std_scale!r}")
    leaves_p, treedef = jax.tree_util.tree_flatten_with_path(params)
    paths = [p for p, _ in leaves_p]
    leaves = [v for _, v in leaves_p]
    if layers is not None:
        if isinstance(layers, str):
            layers = [layers]
        wanted = set(layers)
        selected = [bool(_path_names(p) & wanted) for p in paths]
        found = set().union(*(_path_names(p) & wanted for p in paths)) if paths else set()
        missing = wanted - found
        if missing:
            raise ValueError(f"layers: {sorted(missing)} match no parameter leaf")
    else:
        selected = [True] * len(leaves)

    if init_fn is not None:
        fresh = init_fn(key)
        fresh_leaves, fresh_def = jax.tree_util.tree_flatten(fresh)
        if fresh_def != treedef:
            raise ValueError("init_fn must return a pytree with the structure of params")
        for old, new in zip(leaves, fresh_leaves, strict=True):
            if jnp.shape(old) != jnp.shape(new):
                raise ValueError(
                    f"init_fn must return leaves of the params' shapes, got {jnp.shape(new)} "
                    f"for a {jnp.shape(old)} leaf"
                )
        out = [n if s else o for o, n, s in zip(leaves, fresh_leaves, selected, strict=True)]
        return jax.tree_util.tree_unflatten(treedef, out)

    todo = [
        i
        for i, (leaf, sel) in enumerate(zip(leaves, selected, strict=True))
        if sel and jnp.issubdtype(jnp.result_type(leaf), jnp.floating) and jnp.size(leaf) > 0
    ]
    fresh = _randomize_leaves(
        [jnp.asarray(leaves[i]) for i in todo],
        key,
        init=init,
        zero_std_scale=float(zero_std_scale),
    )
    out = list(leaves)
    for i, v in zip(todo, fresh, strict=True):
        out[i] = v
    return jax.tree_util.tree_unflatten(treedef, out)


@struct.dataclass
class RandomizationCheck:
    """Result of :func:`model_randomization_check` (a pytree; ``higher_is_better`` static).

    Attributes:
      mean: ``[]`` mean Spearman correlation over images with a defined correlation (NaN if
        none).
      per_image: ``[B]`` Spearman correlations between the maps of the trained and the
        randomized model (NaN for a constant map).
      num_undefined: ``[]`` int, number of NaN correlations.
      original: ``[B, H, W]`` maps of the trained model.
      randomized: ``[B, H, W]`` maps of the randomized model.
      higher_is_better: ``False``: a method whose maps depend on what the model learned
        changes them when the weights are randomized (low correlation passes the check).
    """

    mean: jax.Array
    per_image: jax.Array
    num_undefined: jax.Array
    original: jax.Array
    randomized: jax.Array
    higher_is_better: bool = struct.field(pytree_node=False, default=False)

    def __getitem__(self, key: str):
        """Dict-style access (``check["mean"]``), as returned before this was a class."""
        return getattr(self, key)


def model_randomization_check(
    attr_fn: Callable[..., Array],
    params: Any,
    random_params: Any,
    images: Array,
    *,
    target: Array | None = None,
    absolute: bool = False,
    ties: str = "average",
) -> RandomizationCheck:
    """Adebayo et al.'s model-parameter randomization test of an attribution method.

    Args:
      attr_fn: ``attr_fn(params, images, target) -> [B, H, W]`` maps
        (:mod:`svebi_jax.attribution`).
      params: the trained parameters.
      random_params: randomized parameters (e.g. from :func:`randomize_params`).
      images: ``[B, H, W, C]`` float images.
      target: ``[B]`` classes both models' maps explain; default ``None`` (each model's own
        prediction).
      absolute: compare :math:`|\\text{map}|` (Adebayo et al. report both the signed and the
        absolute-value comparison).
      ties: rank tie method, see :func:`rankdata`.

    Returns:
      :class:`RandomizationCheck` (lower correlation is better).

    Raises:
      ValueError: bad ``images``, or maps that are not ``[B, H, W]`` with ``B`` = the number
        of images.
    """
    if not callable(attr_fn):
        raise TypeError(f"attr_fn must be callable, got {type(attr_fn).__name__}")
    V.check_bool("absolute", absolute)
    images = jnp.asarray(V.check_images(images))
    original = jnp.asarray(attr_fn(params, images, target))
    randomized = jnp.asarray(attr_fn(random_params, images, target))
    expected = tuple(images.shape[:3])
    for name, m in (("original", original), ("randomized", randomized)):
        if tuple(m.shape) != expected:
            raise ValueError(
                f"attr_fn must return [B, H, W] = {expected} maps, got {tuple(m.shape)} "
                f"({name} params)"
            )
    a, b = (jnp.abs(original), jnp.abs(randomized)) if absolute else (original, randomized)
    rho = spearman_rank_correlation(a, b, ties=ties)
    defined = ~jnp.isnan(rho)
    n_def = defined.sum()
    mean = jnp.where(n_def > 0, jnp.where(defined, rho, 0.0).sum() / jnp.maximum(n_def, 1), jnp.nan)
    return RandomizationCheck(mean, rho, (~defined).sum(), original, randomized)

"""ROAD: RemOve And Debias (Rong et al., ICML 2022), vectorised in JAX.

Insertion/deletion replace pixels by a fixed substrate (black on MNIST), so the model sees
images whose *shape* of missing pixels tells it which pixels were ranked: a map can score
well because the mask itself is informative, and a game that starts from black rewards maps
that mark ink. ROAD removes pixels and fills them by **noisy linear imputation**, which
leaves little class information in the shape of the removed region:

each removed pixel takes the weighted mean of its 8 neighbours (direct neighbours weigh
:math:`1/6`, diagonal ones :math:`1/12`, neighbours outside the image are left out), where
removed neighbours are themselves unknowns. For the removed set :math:`U` this is the sparse
linear system

.. math::
    \\Big(\\sum_{j \\in N(i)} w_{ij}\\Big) x_i - \\sum_{j \\in N(i) \\cap U} w_{ij} x_j
    = \\sum_{j \\in N(i) \\setminus U} w_{ij} v_j \\qquad (i \\in U),

with :math:`v` the image's values; it is solved per channel (symmetric positive definite
whenever not every pixel is removed) and Gaussian noise :math:`\\mathcal N(0, \\sigma^2)`,
:math:`\\sigma` = ``noise`` (ROAD: 0.01), is added to the imputed pixels.

Two orders are played for each removal fraction :math:`p`:

- **MoRF** (most relevant first): the :math:`\\lfloor pHW \\rceil` most relevant pixels are
  removed; a faithful map makes the class probability drop fast (lower is better);
- **LeRF** (least relevant first): the least relevant ones are removed; the class should
  survive (higher is better).

The curve at :math:`p` is the softmax probability of the class predicted on the unperturbed
image (and, as ROAD reports it, whether that class is still predicted). Summaries are means
over the fractions; ``gap = LeRF − MoRF`` (higher is better) is the single number ROAD
recommends reading, since both orders share the imputation's artefacts.

Everything — every (image, fraction, order) item — is built and scored in one jit-compiled
computation (``lax.map`` over fixed-size chunks); the linear systems are solved by a
fixed number of conjugate-gradient steps whose matrix–vector product is a 3×3 stencil.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax import lax

from svebi_jax import _validation as V
from svebi_jax.attribution import attribution_maps
from svebi_jax.metrics.insdel import _Logits
from svebi_jax.protocols import ApplyFn

__all__ = [
    "FRACTIONS",
    "NEIGHBOUR_WEIGHTS",
    "ROADResult",
    "noisy_linear_impute",
    "road",
]

Array = jax.Array

#: ROAD's removal fractions (10 % ... 90 %).
FRACTIONS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)

#: ``(dy, dx) -> weight`` of the imputation's neighbours (ROAD's ``NoisyLinearImputer``).
NEIGHBOUR_WEIGHTS: dict[tuple[int, int], float] = {
    (dy, dx): (1 / 12 if dy and dx else 1 / 6)
    for dy in (-1, 0, 1)
    for dx in (-1, 0, 1)
    if (dy, dx) != (0, 0)
}


_TINY = 1e-30


def _stencil(x: Array) -> Array:
    """:math:`\\sum_j w_{ij} x_j` over in-image neighbours of each pixel of ``[..., H, W]``."""
    h, w = x.shape[-2:]
    pad = jnp.pad(x, [(0, 0)] * (x.ndim - 2) + [(1, 1), (1, 1)])
    out = jnp.zeros_like(x)
    for (dy, dx), wt in NEIGHBOUR_WEIGHTS.items():
        out = out + wt * pad[..., 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
    return out


def _impute(values: Array, removed: Array, num_iters: int) -> Array:
    """Noise-free imputation of ``values [N, H, W]`` at ``removed [N, H, W]`` (CG)."""
    m = removed.astype(values.dtype)
    known = values * (1 - m)
    degree = _stencil(jnp.ones_like(values))
    b = m * _stencil(known)

    def op(z):
        return m * (degree * z - _stencil(m * z))

    def dot(a, c):
        return jnp.sum(a * c, axis=(-2, -1), keepdims=True)

    x0 = m * known  # zeros on the removed set
    r0 = b - op(x0)

    def body(_, carry):
        x, r, p, rr = carry
        ap = op(p)
        pap = dot(p, ap)
        # Converged systems (exactly, for small ones) stop moving instead of dividing 0 by 0.
        active = (rr > _TINY) & (pap > _TINY)
        alpha = jnp.where(active, rr / jnp.where(active, pap, 1.0), 0.0)
        x = x + alpha * p
        r = r - alpha * ap
        rr_new = dot(r, r)
        beta = jnp.where(active, rr_new / jnp.where(active, rr, 1.0), 0.0)
        return x, r, jnp.where(active, r + beta * p, p), jnp.where(active, rr_new, rr)

    x, *_ = lax.fori_loop(0, num_iters, body, (x0, r0, r0, dot(r0, r0)))
    return known + m * x


def noisy_linear_impute(
    images: Array,
    removed: Array,
    *,
    key: Array | None = None,
    noise: float = 0.01,
    num_iters: int = 200,
) -> Array:
    """ROAD's noisy linear imputation of the ``removed`` pixels (see the module docstring).

    Args:
      images: ``[B, H, W, C]`` float images.
      removed: ``[B, H, W]`` bool, the pixels to impute (all channels); not all of an image.
      key: PRNG key of the noise (required when ``noise > 0``).
      noise: :math:`\\sigma \\ge 0` of the Gaussian noise added to imputed pixels.
      num_iters: conjugate-gradient steps (exact after at most ``|U|`` steps; 200 brings
        28×28 images with 90 % removed to float32 precision).

    Returns:
      ``[B, H, W, C]`` images: kept pixels unchanged, removed ones imputed (plus noise).
    """
    images = jnp.asarray(V.check_images(images))
    removed = jnp.asarray(removed)
    if removed.shape != images.shape[:3]:
        raise ValueError(
            f"removed must be [B, H, W] = {tuple(images.shape[:3])} to match images, "
            f"got shape {removed.shape}"
        )
    noise = V.check_number("noise", noise, low=0.0)
    num_iters = V.check_positive_int("num_iters", num_iters)
    if noise > 0 and key is None:
        raise ValueError("key is required when noise > 0")
    return _impute_noisy(images, removed.astype(bool), key, noise, num_iters)


def _impute_noisy(images, removed, key, noise: float, num_iters: int):
    chw = jnp.moveaxis(images, -1, 1)  # [B, C, H, W]
    out = _impute(chw, jnp.broadcast_to(removed[:, None], chw.shape), num_iters)
    if noise > 0:
        out = out + removed[:, None] * noise * jax.random.normal(key, out.shape, out.dtype)
    return jnp.moveaxis(out, 1, -1)


# ----------------------------------------------------------------------------- the metric


@struct.dataclass
class ROADResult:
    """ROAD of one attribution method (a pytree).

    Attributes:
      fractions: ``[F]`` removal fractions.
      morf: ``[B, F]`` probability of the original class, most relevant pixels removed (↓).
      lerf: ``[B, F]`` the same, least relevant pixels removed (↑).
      morf_kept, lerf_kept: ``[B, F]`` float 0/1, whether the original class is still the
        prediction (ROAD's accuracy curves).
      morf_auc, lerf_auc: ``[B]`` means of the curves over the fractions.
      mean_morf, mean_lerf: ``[]`` their means over images.
      gap: ``[]`` ``mean_lerf - mean_morf`` (higher is better).
      classes: ``[B]`` int32 class predicted on the unperturbed images.
      maps: ``[B, H, W]`` the scored maps.
      higher_is_better: ``True``: the summary, ``gap``, is better when higher (static).
    """

    fractions: Array
    morf: Array
    lerf: Array
    morf_kept: Array
    lerf_kept: Array
    morf_auc: Array
    lerf_auc: Array
    mean_morf: Array
    mean_lerf: Array
    gap: Array
    classes: Array
    maps: Array | None = None
    higher_is_better: bool = struct.field(pytree_node=False, default=True)


def _ranks(saliency: Array, key: Array) -> Array:
    """``[B, HW]`` rank of each pixel by decreasing saliency, ties broken at random."""
    b = saliency.shape[0]
    flat = saliency.reshape(b, -1)
    u = jax.random.uniform(key, flat.shape)
    order = jax.vmap(lambda s, t: jnp.lexsort((t, -s)))(flat, u)
    pos = jnp.arange(flat.shape[1], dtype=jnp.int32)
    return jax.vmap(lambda o: jnp.zeros_like(pos).at[o].set(pos))(order)


@functools.partial(
    jax.jit, static_argnames=("predict_fn", "counts", "noise", "num_iters", "chunk_size")
)
def _road(params, images, saliency, key, *, predict_fn, counts, noise, num_iters, chunk_size):
    b, h, w, _ = images.shape
    hw = h * w
    n_f = len(counts)
    k_rank, k_noise = jax.random.split(key)
    rank = _ranks(saliency, k_rank)
    counts_arr = jnp.asarray(counts, jnp.int32)

    def chunked(fn, n):
        n_chunks = -(-n // chunk_size)
        idx = jnp.minimum(jnp.arange(n_chunks * chunk_size, dtype=jnp.int32), n - 1)
        out = lax.map(fn, idx.reshape(n_chunks, chunk_size))
        return out.reshape(n_chunks * chunk_size, *out.shape[2:])[:n]

    classes = chunked(lambda i: jnp.argmax(predict_fn(params, images[i]), -1), b)
    classes = classes.astype(jnp.int32)

    # Item k = (image * 2 + order) * F + fraction; order 0 = MoRF, 1 = LeRF.
    def score(idx):
        img = idx // (2 * n_f)
        lerf = (idx // n_f) % 2
        cnt = counts_arr[idx % n_f]
        r = rank[img]  # [chunk, HW]
        removed = jnp.where(lerf[:, None] == 1, r >= hw - cnt[:, None], r < cnt[:, None])
        keys = jax.vmap(lambda i: jax.random.fold_in(k_noise, i))(idx)
        x = images[img]
        chw = jnp.moveaxis(x, -1, 1)
        rem = removed.reshape(-1, 1, h, w)
        filled = _impute(chw, jnp.broadcast_to(rem, chw.shape), num_iters)
        eps = jax.vmap(lambda k: jax.random.normal(k, chw.shape[1:], chw.dtype))(keys)
        filled = jnp.moveaxis(filled + rem * noise * eps, 1, -1)
        out = predict_fn(params, filled).astype(jnp.float32)
        prob = jax.nn.softmax(out, axis=-1)
        c = classes[img]
        p = jnp.take_along_axis(prob, c[:, None], axis=-1)[:, 0]
        kept = (jnp.argmax(out, axis=-1) == c).astype(jnp.float32)
        return jnp.stack([p, kept], axis=-1)

    res = chunked(score, b * 2 * n_f).reshape(b, 2, n_f, 2)
    valid = V.rows_finite(images) & ~jnp.any(jnp.isnan(saliency.reshape(b, -1)), axis=-1)
    res = V.flag_rows(res, valid)
    morf, lerf = res[:, 0, :, 0], res[:, 1, :, 0]
    morf_auc, lerf_auc = morf.mean(-1), lerf.mean(-1)
    return dict(
        morf=morf,
        lerf=lerf,
        morf_kept=res[:, 0, :, 1],
        lerf_kept=res[:, 1, :, 1],
        morf_auc=morf_auc,
        lerf_auc=lerf_auc,
        mean_morf=morf_auc.mean(),
        mean_lerf=lerf_auc.mean(),
        gap=lerf_auc.mean() - morf_auc.mean(),
        classes=classes,
    )


def _counts(fractions, hw: int) -> tuple[tuple[int, ...], np.ndarray]:
    fr = np.asarray(fractions, dtype=np.float64)
    if fr.ndim != 1 or fr.size == 0 or not np.all((fr > 0) & (fr < 1)):
        raise ValueError(f"fractions must be a non-empty 1-D sequence in (0, 1), got {fractions!r}")
    counts = tuple(int(c) for c in np.clip(np.rint(fr * hw), 1, hw - 1))
    return counts, fr.astype(np.float32)


def road(
    attributions: Callable | Array,
    apply_fn: ApplyFn,
    params,
    images: Array,
    *,
    key: Array,
    target: Array | None = None,
    batch_size: int | None = None,
    fractions: Sequence[float] = FRACTIONS,
    noise: float = 0.01,
    num_iters: int = 200,
    chunk_size: int = 128,
) -> ROADResult:
    """ROAD of an attribution method: MoRF and LeRF with noisy linear imputation.

    The maps are ``attributions(params, images, target)`` (in batches of ``batch_size``), or
    ``attributions`` itself when it is a ``[B, H, W]`` array of maps computed elsewhere.

    Args:
      attributions: ``attr_fn(params, images, target) -> [B, H, W]``
        (:mod:`svebi_jax.attribution`), or ``[B, H, W]`` maps (higher = more relevant).
      apply_fn: the model; its logits are scored (``apply_fn(params, images)`` returning the
        logits or an object with ``.logits``; a static argument of the compiled computation:
        pass the same object to reuse it).
      params: its parameters (an argument of the compiled computation: another seed's model
        does not recompile).
      images: ``[B, H, W, C]`` float images.
      key: PRNG key (random tie-breaking of equal saliency, imputation noise); the same key
        gives the same result.
      target: ``[B]`` classes the maps explain (passed to ``attr_fn``; default: the predicted
        ones).
      batch_size: images per call of ``attr_fn`` (default: all).
      fractions: removal fractions in ``(0, 1)``; ``round(p · H · W)`` pixels are removed.
      noise: :math:`\\sigma` of the imputation noise (ROAD: 0.01).
      num_iters: conjugate-gradient steps of the imputation.
      chunk_size: perturbed images per forward pass.

    Returns:
      :class:`ROADResult` with the scored ``maps``.

    Raises:
      ValueError: maps that are not ``[B, H, W]`` or hold NaN, bad images, ``fractions``,
        ``noise``, ``num_iters`` or ``chunk_size``.
    """
    if not callable(apply_fn):
        raise TypeError(f"apply_fn must be callable, got {type(apply_fn).__name__}")
    images = jnp.asarray(V.check_images(images))
    if callable(attributions):
        maps = attribution_maps(attributions, params, images, target=target, batch_size=batch_size)
    else:
        maps = attributions
    maps = jnp.asarray(maps, jnp.float32)
    b, h, w, _ = images.shape
    if maps.shape != (b, h, w):
        raise ValueError(
            f"attributions must be [B, H, W] = {(b, h, w)} maps to match images, got {maps.shape}"
        )
    if not V.is_tracer(maps) and bool(jnp.any(jnp.isnan(maps))):
        raise ValueError("attributions: the maps must not contain NaN")
    counts, fr = _counts(fractions, h * w)
    noise = V.check_number("noise", noise, low=0.0)
    out = _road(
        params,
        images,
        maps,
        key,
        predict_fn=_Logits(apply_fn),
        counts=counts,
        noise=float(noise),
        num_iters=V.check_positive_int("num_iters", num_iters),
        chunk_size=V.check_positive_int("chunk_size", chunk_size),
    )
    return ROADResult(fractions=jnp.asarray(fr), maps=maps, **out)

"""Convolution and dense primitives of the time-batched runner (private).

:func:`conv2d` computes exactly what :func:`conv` computes (XLA's convolution, or on CPU for a
single-channel input a GEMM; it calls it on row chunks of at most ``chunk`` images) and
differentiates it with two matrix products
instead of XLA's transposed convolutions. With ``P`` the im2col patch matrix of the (padded)
input, ``K`` the kernel reshaped to ``[k_h k_w C_in, C_out]`` and ``G`` the output cotangent
reshaped to ``[N H' W', C_out]``:

.. math::
    Y = P K, \\qquad \\frac{\\partial L}{\\partial K} = P^\\top G, \\qquad
    \\frac{\\partial L}{\\partial X} = \\operatorname{col2im}(G K^\\top)

Why: on XLA:CPU the kernel gradient of a small convolution is lowered to a convolution whose
batch and feature axes are swapped (e.g. ``[12, 12, 12, T·B] ⊛ [8, 8, T·B, 64]`` for the
shallow SNN's conv2), which runs at a fraction of the speed of the same FLOPs as one GEMM; its
input gradient is a full convolution with 4-pixel padding on 64 input channels and 12
outputs. Both become plain GEMMs here. Chunking the rows keeps each call's working set in
cache: measured on 2 AVX2 cores, conv2's forward runs ~2x faster per FLOP in chunks of ~100
images than as one call over 1,000.

The forward arithmetic is :func:`conv`, the reference runner's own, on other batch sizes
(row chunks of ``T·B`` images instead of ``B`` per step); spikes equal the reference
runner's (tested) unless a potential lies within rounding of the threshold and the two batch
sizes get kernels that sum in different orders. Gradients agree to float rounding (the sums
are ordered differently).

Bit-identity between two algorithms (a GEMM and XLA's convolution, or two of XLA's kernels)
holds only where both sum the same products in the same order, which XLA:CPU does not
promise across CPUs (AVX2, AVX-512) or shapes. What holds everywhere is the floating-point
bound: two float32 sums of the same ``k`` products differ by at most
:math:`2\\gamma_k \\sum_i |x_i w_i|`, :math:`\\gamma_k = k u / (1 - k u)`, :math:`u = 2^{-24}`;
the tests assert that bound (or a tolerance of that size) between different algorithms, and
bit-identity only for the same computation.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from svebi_jax import lif

Array = jax.Array

_DIMS = ("NHWC", "HWIO", "NHWC")


def map_rows(fn, *arrays: Array, chunk: int | None) -> Array:
    """``fn(*arrays)`` computed on consecutive row chunks of the leading axis (``lax.map``).

    ``fn`` must act row-wise (row ``n`` of its output depends only on row ``n`` of its
    inputs). The leading ``(N // chunk) · chunk`` rows run in a :func:`jax.lax.map` over
    chunks; the remaining rows in one extra call. ``chunk=None`` or ``N <= chunk`` is a
    single call.

    Args:
      fn: row-wise function of ``[n, ...]`` arrays returning one ``[n, ...]`` array.
      *arrays: ``[N, ...]`` arrays with the same leading size.
      chunk: rows per call (positive int) or ``None``.

    Returns:
      ``[N, ...]`` the concatenated outputs.
    """
    n = arrays[0].shape[0]
    if chunk is None or n <= chunk:
        return fn(*arrays)
    full = (n // chunk) * chunk
    heads = [a[:full].reshape((n // chunk, chunk) + a.shape[1:]) for a in arrays]
    out = jax.lax.map(lambda xs: fn(*xs), tuple(heads))
    out = out.reshape((full,) + out.shape[2:])
    if full == n:
        return out
    return jnp.concatenate([out, fn(*(a[full:] for a in arrays))], axis=0)


def _sum_rows(fn, *arrays: Array, chunk: int | None) -> Array:
    """``Σ_chunks fn(chunk of arrays)`` for a ``fn`` that sums over its rows (e.g. ``Pᵀ G``)."""
    n = arrays[0].shape[0]
    if chunk is None or n <= chunk:
        return fn(*arrays)
    full = (n // chunk) * chunk
    heads = [a[:full].reshape((n // chunk, chunk) + a.shape[1:]) for a in arrays]

    def body(acc, xs):
        return acc + fn(*xs), None

    zero = jax.eval_shape(fn, *(h[0] for h in heads))
    acc, _ = jax.lax.scan(body, jnp.zeros(zero.shape, zero.dtype), tuple(heads))
    if full == n:
        return acc
    return acc + fn(*(a[full:] for a in arrays))


def _out_size(size: int, k: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - k) // stride + 1


def _patches(xp: Array, kh: int, kw: int, stride: int, oh: int, ow: int) -> Array:
    """im2col of a padded ``[n, H, W, C]`` input: ``[n, oh, ow, kh·kw·C]`` in ``(i, j, c)``
    order, so that ``patches @ kernel.reshape(kh·kw·C, O)`` is the convolution.

    Built in two stages (``kw`` column shifts, then ``kh`` row shifts of those), which XLA:CPU
    runs ~2x faster than one concatenation of ``kh·kw`` narrow slices.
    """
    s = stride
    cols = jnp.stack([xp[:, :, j : j + s * (ow - 1) + 1 : s, :] for j in range(kw)], axis=3)
    rows = jnp.stack([cols[:, i : i + s * (oh - 1) + 1 : s] for i in range(kh)], axis=3)
    return rows.reshape(xp.shape[0], oh, ow, -1)  # [n, oh, ow, kh, kw, C] flattened


def _col2im(cols: Array, kh: int, kw: int, stride: int, hp: int, wp: int) -> Array:
    """Adjoint of :func:`_patches`: ``[n, oh, ow, kh, kw, C]`` → padded ``[n, hp, wp, C]``
    (the two stages in reverse, each a sum of zero-padded shifts)."""
    oh, ow = cols.shape[1:3]
    s = stride
    zero = jnp.zeros((), cols.dtype)
    none = (0, 0, 0)

    def shift(a, axis, i, size, n):
        cfg = [none] * a.ndim
        cfg[axis] = (i, size - i - s * (n - 1) - 1, s - 1)
        return jax.lax.pad(a, zero, cfg)

    rows = functools.reduce(jnp.add, [shift(cols[:, :, :, i], 1, i, hp, oh) for i in range(kh)])
    return functools.reduce(jnp.add, [shift(rows[:, :, :, j], 2, j, wp, ow) for j in range(kw)])


def _xla_conv(x: Array, kernel: Array, stride: int, padding: int) -> Array:
    """XLA's convolution, summed in at least float32 (bfloat16 products, float32 sums; a
    float64 input stays float64)."""
    return jax.lax.conv_general_dilated(
        x,
        kernel,
        window_strides=(stride, stride),
        padding=((padding, padding), (padding, padding)),
        dimension_numbers=_DIMS,
        preferred_element_type=jnp.promote_types(jnp.result_type(x, kernel), jnp.float32),
    )


def _im2col(x: Array, kh: int, kw: int, stride: int, padding: int) -> Array:
    """:func:`_patches` of ``x`` ``[n, H, W, C]`` zero-padded by ``padding``."""
    if padding:
        x = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    oh, ow = _out_size(x.shape[1], kh, stride, 0), _out_size(x.shape[2], kw, stride, 0)
    return _patches(x, kh, kw, stride, oh, ow)


def _gemm_conv(x: Array, kernel: Array, stride: int, padding: int) -> Array:
    """The convolution as one GEMM over the im2col patches (``[n, oh, ow, C_out]``)."""
    kh, kw, c_in, c_out = kernel.shape
    p = _im2col(x, kh, kw, stride, padding)
    return jnp.matmul(p, kernel.reshape(kh * kw * c_in, c_out), preferred_element_type=jnp.float32)


def conv(x: Array, kernel: Array, stride: int, padding: int) -> Array:
    """NHWC/HWIO convolution of both runners (the reference one and the time-batched one).

    XLA's convolution, except on CPU for a float32 single-channel input (the first layer on
    grayscale images), which runs as one GEMM over its im2col patches: XLA:CPU's direct
    convolution of one input channel runs at a few GFLOP/s (~7 ms for the shallow SNN's conv1
    on 143 digits, one core), the GEMM in about half the time. Same products, summed in an
    order that may differ from XLA's kernel: within :math:`2\\gamma_k \\sum |x||w|` of XLA's
    convolution (``k = k_h k_w``; tested), bit-identical only where XLA's kernel happens to
    sum in the GEMM's order (the shallow SNN's conv1 on AVX2 machines, not on AVX-512 ones).
    Both runners call this function.
    """
    if x.shape[-1] != 1 or x.dtype != jnp.float32 or kernel.dtype != jnp.float32:
        return _xla_conv(x, kernel, stride, padding)
    return jax.lax.platform_dependent(
        x,
        kernel,
        cpu=lambda x, k: _gemm_conv(x, k, stride, padding),
        default=lambda x, k: _xla_conv(x, k, stride, padding),
    )


def _plain_conv(x: Array, kernel: Array, stride: int, padding: int, dtype) -> Array:
    return conv(x.astype(dtype), kernel.astype(dtype), stride, padding)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5, 6))
def conv2d(
    x: Array,
    kernel: Array,
    stride: int,
    padding: int,
    compute_dtype,
    chunk: int | None,
    residual_dtype=None,
) -> Array:
    """NHWC/HWIO 2-D convolution with GEMM gradients (see the module docstring).

    Args:
      x: ``[N, H, W, C_in]`` input.
      kernel: ``[k_h, k_w, C_in, C_out]``.
      stride: window stride (both axes).
      padding: symmetric zero padding (both axes).
      compute_dtype: dtype of the products (``jnp.float32`` or ``jnp.bfloat16``); the sums
        are accumulated and returned in float32.
      chunk: images per call (``None``: one call), see :func:`map_rows`.
      residual_dtype: dtype in which ``x`` is kept for the backward pass (``None``: the
        compute dtype); bfloat16 is exact for binary spikes and halves that memory.

    Returns:
      ``[N, H', W', C_out]`` float32.
    """
    return map_rows(
        lambda a: _plain_conv(a, kernel, stride, padding, compute_dtype), x, chunk=chunk
    )


def _conv2d_fwd(x, kernel, stride, padding, compute_dtype, chunk, residual_dtype):
    y = conv2d(x, kernel, stride, padding, compute_dtype, chunk, residual_dtype)
    kept = x.astype(residual_dtype or compute_dtype)
    return y, (kept, kernel, jnp.zeros((0,), x.dtype))


def _conv2d_bwd(stride, padding, compute_dtype, chunk, residual_dtype, res, g):
    x, kernel, x_dtype = res
    kh, kw, c_in, c_out = kernel.shape
    n, h, w, _ = x.shape
    oh, ow = g.shape[1:3]
    hp, wp = h + 2 * padding, w + 2 * padding
    kmat = kernel.reshape(kh * kw * c_in, c_out).astype(compute_dtype)

    def dk_part(xc, gc):
        p = _im2col(xc.astype(compute_dtype), kh, kw, stride, padding).reshape(-1, kh * kw * c_in)
        gm = gc.reshape(-1, c_out).astype(compute_dtype)
        return jnp.matmul(p.T, gm, preferred_element_type=jnp.float32)

    def dx_part(gc):
        cols = jnp.matmul(
            gc.reshape(-1, c_out).astype(compute_dtype), kmat.T, preferred_element_type=jnp.float32
        )
        cols = cols.reshape(gc.shape[0], oh, ow, kh, kw, c_in)
        xp = _col2im(cols, kh, kw, stride, hp, wp)
        return xp[:, padding : padding + h, padding : padding + w, :]

    dk = _sum_rows(dk_part, x, g, chunk=chunk).reshape(kernel.shape).astype(kernel.dtype)
    dx = map_rows(dx_part, g, chunk=chunk).astype(x_dtype.dtype)
    return dx, dk


conv2d.defvjp(_conv2d_fwd, _conv2d_bwd)


def dense(x: Array, kernel: Array, compute_dtype) -> Array:
    """``x @ kernel`` with products in ``compute_dtype`` and float32 accumulation.

    Args:
      x: ``[N, F_in]``.
      kernel: ``[F_in, F_out]``.
      compute_dtype: ``jnp.float32`` or ``jnp.bfloat16``.

    Returns:
      ``[N, F_out]`` float32.
    """
    if compute_dtype == jnp.float32:
        return x @ kernel
    return jnp.matmul(
        x.astype(compute_dtype), kernel.astype(compute_dtype), preferred_element_type=jnp.float32
    )


def _windows(x: Array, k: int) -> Array:
    """``[N, H, W, C]`` → ``[N, H//k, k, W//k, k, C]`` (floors: trailing rows/cols dropped)."""
    n, h, w, c = x.shape
    hh, ww = h // k, w // k
    return x[:, : hh * k, : ww * k, :].reshape(n, hh, k, ww, k, c)


def window_max(x: Array, k: int) -> Array:
    """Non-overlapping ``k × k`` max pooling of ``[N, H, W, C]`` (VALID: floors the size)."""
    return _windows(x, k).max(axis=(2, 4))


def max_unpool(x: Array, g: Array, k: int) -> Array:
    """Cotangent of non-overlapping max pooling: ``g`` shared equally by tied maxima.

    .. math::
        \\frac{\\partial L}{\\partial x_i} = \\frac{[x_i = m]}{\\#\\{j: x_j = m\\}}\\, g,
        \\qquad m = \\max_{j \\in \\text{window}(i)} x_j

    (what JAX's ``max`` reduction gives), zero for rows/columns the pooling dropped.

    Args:
      x: ``[N, H, W, C]`` pooling input.
      g: ``[N, H//k, W//k, C]`` cotangent of the pooled output.
      k: window and stride.

    Returns:
      ``[N, H, W, C]`` in ``g``'s dtype.
    """
    xr = _windows(x, k)
    eq = xr == xr.max(axis=(2, 4), keepdims=True)
    return _share_ties(eq, jnp.sum(eq, axis=(2, 4)), g, x.shape)


def _share_ties(eq: Array, count: Array, g: Array, shape) -> Array:
    """``g / count`` on the tied maxima ``eq`` (``[N, H//k, k, W//k, k, C]``), 0 elsewhere,
    as an ``[N, H, W, C]`` = ``shape`` array (zeros for the rows/columns pooling dropped)."""
    n, h, w, c = shape
    q = g / count.astype(g.dtype)
    gx = jnp.where(eq, q[:, :, None, :, None, :], jnp.zeros((), g.dtype))
    hh, ww = eq.shape[1], eq.shape[3]
    gx = gx.reshape(n, hh * eq.shape[2], ww * eq.shape[4], c)
    if gx.shape[1:3] != (h, w):
        gx = jnp.pad(gx, ((0, 0), (0, h - gx.shape[1]), (0, w - gx.shape[2]), (0, 0)))
    return gx


def binary_max_unpool(s: Array, g: Array, k: int) -> Array:
    """:func:`max_unpool` for binary ``s`` (entries 0 or 1, e.g. spikes): same values,
    ~3.5x faster on CPU.

    With :math:`n_1` the number of ones in a window, its maximum is :math:`m = [n_1 > 0]`
    and the tied maxima are the ones (:math:`n_1 > 0`) or all :math:`k^2` zeros
    (:math:`n_1 = 0`), so one window sum replaces the general rule's max, compare and count:

    .. math::
        \\frac{\\partial L}{\\partial s_i} = \\frac{[s_i = m]}{n_1 + k^2 [n_1 = 0]}\\, g

    Args:
      s: ``[N, H, W, C]`` binary pooling input.
      g: ``[N, H//k, W//k, C]`` cotangent of the pooled output.
      k: window and stride.

    Returns:
      ``[N, H, W, C]`` in ``g``'s dtype.
    """
    sw = _windows(s, k)
    n1 = jnp.sum(sw, axis=(2, 4))
    hit = n1 > 0
    eq = sw == hit.astype(s.dtype)[:, :, None, :, None, :]
    return _share_ties(eq, jnp.where(hit, n1, k * k), g, s.shape)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def max_pool(x: Array, window: int, residual_dtype, binary: bool = False) -> Array:
    """Non-overlapping ``window × window`` max pooling of ``[N, H, W, C]`` (VALID, floors).

    Same values as ``reduce_window`` max pooling, and the same gradient as JAX's reduction
    (tied maxima share it equally):

    .. math::
        \\frac{\\partial L}{\\partial x_i} = \\frac{[x_i = m]}{\\#\\{j: x_j = m\\}}
        \\frac{\\partial L}{\\partial m}, \\qquad m = \\max_{j \\in \\text{window}} x_j

    but the backward pass recomputes the tie mask from ``x`` (kept in ``residual_dtype``;
    bfloat16 is exact for binary spikes) instead of storing a float32 mask.

    Args:
      x: ``[N, H, W, C]``.
      window: pooling window and stride ``k``.
      residual_dtype: dtype in which ``x`` is kept for the backward pass.
      binary: ``x`` holds only 0s and 1s (spikes): the backward pass uses
        :func:`binary_max_unpool` (same values, faster).

    Returns:
      ``[N, H // k, W // k, C]``.
    """
    return window_max(x, window)


def _max_pool_fwd(x, window, residual_dtype, binary):
    pooled = max_pool(x, window, residual_dtype, binary)
    return pooled, (x.astype(residual_dtype), jnp.zeros((0,), x.dtype))


def _max_pool_bwd(window, residual_dtype, binary, res, g):
    xs, x_dtype = res
    unpool = binary_max_unpool if binary else max_unpool
    return (unpool(xs, g, window).astype(x_dtype.dtype),)


max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5, 6))
def lif_max_pool(
    currents: Array,
    u0: Array,
    s0: Array,
    dyn: lif.Dynamics,
    num_steps: int | None,
    window: int,
    unroll,
) -> tuple[Array, Array]:
    """A LIF population followed by non-overlapping max pooling of its spikes, fused.

    Computes exactly ``lif.lif_scan`` then ``max_pool`` of every step's spikes, but neither
    the ``[T, ...]`` spikes nor a pooling mask are stored for the backward pass: it keeps
    the potentials :math:`U[t]` only, recomputes :math:`S[t] = H(U[t] - \\theta)` and the
    tie masks, and unpools inside the reverse LIF loop (:func:`svebi_jax.lif.lif_adjoint`).

    Args:
      currents: ``[T, B, H, W, C]`` currents, or ``[B, H, W, C]`` with ``num_steps``.
      u0, s0: ``[B, H, W, C]`` initial state.
      dyn: :class:`svebi_jax.lif.Dynamics`.
      num_steps: ``T`` for a constant current, else ``None``.
      window: pooling window and stride ``k``.
      unroll: scan unrolling.

    Returns:
      ``(pooled [T, B, H//k, W//k, C], membrane [T, B, H, W, C])``.
    """
    if num_steps is not None:
        currents = jnp.broadcast_to(currents, (num_steps,) + currents.shape)

    def step(state, current):
        state, (s, u) = lif.lif_step(
            state,
            current,
            beta=dyn.beta,
            threshold=dyn.threshold,
            reset=dyn.reset,
            spike_fn=dyn.spike_fn,
            detach_reset=dyn.detach_reset,
        )
        return state, (window_max(s, window), u)

    _, (pooled, membrane) = jax.lax.scan(step, lif.LIFState(u0, s0), currents, unroll=unroll)
    return pooled, membrane


def _lif_max_pool_fwd(currents, u0, s0, dyn, num_steps, window, unroll):
    pooled, membrane = lif_max_pool(currents, u0, s0, dyn, num_steps, window, unroll)
    # The barrier makes XLA store U[t] instead of fusing (and so recomputing) the whole
    # forward recurrence into every step of the backward pass.
    pooled, membrane = jax.lax.optimization_barrier((pooled, membrane))
    return (pooled, membrane), (membrane, u0, s0)


def _lif_max_pool_bwd(dyn, num_steps, window, unroll, res, g):
    unpool = functools.partial(binary_max_unpool, k=window)  # S[t] is 0/1
    return lif.adjoint_bwd(dyn, num_steps, unroll, res, g, unpool=unpool)


lif_max_pool.defvjp(_lif_max_pool_fwd, _lif_max_pool_bwd)

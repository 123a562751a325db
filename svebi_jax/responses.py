"""Filter responses: the design matrix ``X`` and label matrix ``L`` of SVEBI's μ-lasso.

For every spiking conv filter :math:`f` and image :math:`n`, the time-averaged spike map

.. math::
    \\bar S_f = \\frac{1}{T} \\sum_{t=1}^{T} S_f[t] \\in [0, 1]^{H \\times W}

is reduced to one number, the filter's *response*. With the default ``"energy"``
normalization the response is the filter's share of its layer's spike energy,

.. math::
    x_f = \\frac{\\lVert \\bar S_f \\rVert_F^2}
              {\\sum_{f' \\in \\mathrm{layer}(f)} \\lVert \\bar S_{f'} \\rVert_F^2},

so the responses of one layer sum to 1 (a layer without any spike gives zeros, not NaN).
The responses of all conv layers, concatenated in layer order, form one row of
:math:`X \\in \\mathbb{R}^{N \\times m}`; :class:`FilterIndex` maps columns back to
``(layer, channel)``. :math:`L \\in \\{0, 1\\}^{N \\times C}` one-hot encodes the class the
network *predicts* for each image (SVEBI explains the network, not the labels).

:func:`compute_responses` streams a dataset through a jit-compiled forward pass in batches of
one fixed shape and keeps only the ``[N, m]`` responses, never the spike maps of the dataset.
"""

from __future__ import annotations

import dataclasses
import functools
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from svebi_jax import _validation as V
from svebi_jax import batching
from svebi_jax import layers as L
from svebi_jax.protocols import ApplyFn

__all__ = [
    "NORMALIZATIONS",
    "FilterIndex",
    "Responses",
    "compute_responses",
    "filter_responses",
]

Array = jax.Array
Normalization = Literal["energy", "mean", "max"]
NORMALIZATIONS: tuple[str, ...] = ("energy", "mean", "max")


def _check_normalization(normalization) -> None:
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")


_check_positive_int = V.check_positive_int


# ----------------------------------------------------------------------------- pure responses


def filter_responses(
    spike_means: Mapping[str, Array],
    *,
    layers: Sequence[str],
    normalization: Normalization = "energy",
) -> Array:
    """Per-filter responses of a batch from its time-mean spike maps (pure, jittable).

    For each layer :math:`\\ell` and filter :math:`f` of it,

    .. math::
        \\text{energy:}\\ x_f = \\frac{\\sum_{i,j} \\bar S_f[i,j]^2}
            {\\sum_{f' \\in \\ell} \\sum_{i,j} \\bar S_{f'}[i,j]^2}
        \\ (0 \\text{ if the layer is silent}),\\quad
        \\text{mean:}\\ x_f = \\tfrac{1}{HW}\\sum_{i,j} \\bar S_f[i,j],\\quad
        \\text{max:}\\ x_f = \\max_{i,j} \\bar S_f[i,j].

    Args:
      spike_means: ``{layer: [B, H_l, W_l, C_l]}`` float time-mean spike maps :math:`\\bar S`
        (``SNNOutput.spikes`` of a forward pass with ``record="mean"``).
      layers: names of the layers to use, in column order (static).
      normalization: ``"energy"`` (default, the paper's), ``"mean"`` or ``"max"`` (static).

    Returns:
      ``[B, m]`` float32 responses, ``m = Σ_l C_l``, columns grouped by layer in the order of
      ``layers`` (see :class:`FilterIndex`). A row whose spike maps hold NaN (the model's flag
      for a non-finite image under ``jit``) is all NaN, never a plausible 0.

    Raises:
      ValueError: unknown ``normalization``, empty ``layers``, a layer missing from
        ``spike_means`` or a map that is not rank 4.
    """
    _check_normalization(normalization)
    layers = tuple(layers)
    if not layers:
        raise ValueError("layers must name at least one recorded conv layer, got ()")
    cols = []
    valid = None
    for name in layers:
        if name not in spike_means:
            raise ValueError(
                f"layers: {name!r} is not in spike_means; recorded layers: {tuple(spike_means)}"
            )
        s = jnp.asarray(spike_means[name], jnp.float32)
        if s.ndim != 4:
            raise ValueError(
                f"spike_means[{name!r}] must be [B, H, W, C] time-mean maps, got shape {s.shape}"
            )
        ok = V.rows_finite(s)
        valid = ok if valid is None else valid & ok
        if normalization == "energy":
            energy = jnp.sum(s * s, axis=(1, 2))  # [B, C]
            total = jnp.sum(energy, axis=-1, keepdims=True)  # [B, 1]
            safe = jnp.where(total > 0, total, 1.0)
            cols.append(jnp.where(total > 0, energy / safe, 0.0))
        elif normalization == "mean":
            cols.append(jnp.mean(s, axis=(1, 2)))
        else:
            cols.append(jnp.max(s, axis=(1, 2)))
    return V.flag_rows(jnp.concatenate(cols, axis=-1), valid)


# ----------------------------------------------------------------------------- index


@dataclasses.dataclass(frozen=True)
class FilterIndex:
    """Bijection between columns of ``X`` and ``(layer, channel)`` pairs.

    Columns are grouped by layer in the order of ``layers``; within a layer, by channel.
    Column ``offsets[l] + c`` is channel ``c`` of layer ``layers[l]``.

    Attributes:
      layers: layer names, in column order.
      channels: number of channels (filters) of each layer.
      offsets: first column of each layer (derived; ``offsets[0] = 0``).
    """

    layers: tuple[str, ...]
    channels: tuple[int, ...]
    offsets: tuple[int, ...] = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        layers = tuple(self.layers)
        channels = tuple(self.channels)
        if not layers:
            raise ValueError("layers must name at least one layer, got ()")
        if not all(isinstance(n, str) for n in layers):
            raise TypeError(f"layers must be layer names (str), got {layers!r}")
        if len(set(layers)) != len(layers):
            raise ValueError(f"layers must be unique, got {layers}")
        if len(channels) != len(layers):
            raise ValueError(
                f"channels must give one count per layer ({len(layers)}), got {channels}"
            )
        for n, c in zip(layers, channels, strict=True):
            _check_positive_int(f"channels of layer {n!r}", c)
        channels = tuple(int(c) for c in channels)
        object.__setattr__(self, "layers", layers)
        object.__setattr__(self, "channels", channels)
        object.__setattr__(self, "offsets", tuple(int(v) for v in np.cumsum((0,) + channels)[:-1]))

    @classmethod
    def from_geometry(
        cls, geometry: Mapping[str, L.Geometry], layers: Sequence[str]
    ) -> FilterIndex:
        """Index of ``layers`` with channel counts taken from :func:`layers.layer_geometry`."""
        for n in layers:
            if n not in geometry:
                raise ValueError(f"layers: unknown layer {n!r}; geometry has {tuple(geometry)}")
        return cls(tuple(layers), tuple(int(geometry[n].channels) for n in layers))

    @classmethod
    def from_spike_means(
        cls, spike_means: Mapping[str, Any], layers: Sequence[str] | None = None
    ) -> FilterIndex:
        """Index of ``layers`` (default: all, in recorded order) of ``{layer: [B,H,W,C]}`` maps."""
        layers = tuple(spike_means) if layers is None else tuple(layers)
        for n in layers:
            if n not in spike_means:
                raise ValueError(
                    f"layers: unknown layer {n!r}; recorded layers: {tuple(spike_means)}"
                )
        return cls(layers, tuple(int(spike_means[n].shape[-1]) for n in layers))

    @property
    def num_filters(self) -> int:
        """``m``, the total number of columns."""
        return int(sum(self.channels))

    def __len__(self) -> int:
        return self.num_filters

    def _layer_pos(self, layer: str) -> int:
        try:
            return self.layers.index(layer)
        except ValueError:
            raise ValueError(
                f"layer must be one of {self.layers}, got unknown layer {layer!r}"
            ) from None

    def num_channels(self, layer: str) -> int:
        """Number of channels of ``layer``."""
        return self.channels[self._layer_pos(layer)]

    def column(self, layer: str, channel: int) -> int:
        """Column of ``(layer, channel)``.

        Raises:
          ValueError: unknown layer or channel outside ``[0, channels)``.
        """
        pos = self._layer_pos(layer)
        c = self.channels[pos]
        if isinstance(channel, bool) or not isinstance(channel, numbers.Integral):
            raise ValueError(f"channel must be an int in [0, {c}) for {layer!r}, got {channel!r}")
        if not 0 <= channel < c:
            raise ValueError(
                f"channel must be in [0, {c}) for layer {layer!r}, got {channel} (out of range)"
            )
        return self.offsets[pos] + int(channel)

    def lookup(self, col: int) -> tuple[str, int]:
        """``(layer, channel)`` of column ``col`` (inverse of :meth:`column`)."""
        m = self.num_filters
        if isinstance(col, bool) or not isinstance(col, numbers.Integral) or not 0 <= col < m:
            raise ValueError(f"col must be an int in [0, {m}), got {col!r}")
        pos = int(np.searchsorted(np.asarray(self.offsets), int(col), side="right")) - 1
        return self.layers[pos], int(col) - self.offsets[pos]

    def columns(self, layer: str) -> np.ndarray:
        """``[C_l]`` int columns of all channels of ``layer``, in channel order."""
        pos = self._layer_pos(layer)
        return np.arange(self.offsets[pos], self.offsets[pos] + self.channels[pos])


# ----------------------------------------------------------------------------- dataset pass


class Responses(NamedTuple):
    """Filter responses of a dataset (the μ-lasso's inputs).

    Attributes:
      X: ``[N, m]`` float32 responses (see :func:`filter_responses`).
      L: ``[N, K]`` float32 one-hot of the *predicted* class (``K`` = number of logits).
      predictions: ``[N]`` int32 predicted classes (argmax of the logits).
      labels: ``[N]`` int32 true labels, or ``None`` when not given.
      index: :class:`FilterIndex` of the columns of ``X``.
    """

    X: np.ndarray
    L: np.ndarray
    predictions: np.ndarray
    labels: np.ndarray | None
    index: FilterIndex


#: Bytes of float32 time-mean spike maps one forward pass of :func:`compute_responses` may
#: hold at once: a batch whose maps would be larger runs as micro-batches of images under
#: :func:`jax.lax.map`, each reduced to its responses before the next starts (SVGG19 at 224²
#: records ~60 MB of maps per image, so a batch of 256 runs 4 images at a time).
MAP_BYTES_PER_PASS = 256 << 20


def _micro_batch(batch: int, map_bytes_per_image: int) -> int:
    """Images per forward pass: the largest divisor of ``batch`` whose maps fit
    :data:`MAP_BYTES_PER_PASS` (at least 1)."""
    cap = max(1, MAP_BYTES_PER_PASS // max(1, map_bytes_per_image))
    return max(d for d in range(1, min(batch, cap) + 1) if batch % d == 0)


@functools.lru_cache(maxsize=32)
def _response_fn(apply_fn: ApplyFn, layers: tuple[str, ...], normalization: str, micro: int):
    def one(params, images):
        out = apply_fn(params, images, record="mean")
        x = filter_responses(out.spikes, layers=layers, normalization=normalization)
        return x, jnp.argmax(out.logits, axis=-1).astype(jnp.int32)

    def fn(params, images):
        b = images.shape[0]
        if micro >= b:
            return one(params, images)
        pieces = images.reshape((b // micro, micro) + images.shape[1:])
        x, pred = jax.lax.map(lambda xb: one(params, xb), pieces)
        return x.reshape((b,) + x.shape[2:]), pred.reshape(b)

    return jax.jit(fn)


@functools.lru_cache(maxsize=32)
def _sharded_response_fn(
    apply_fn: ApplyFn, layers: tuple[str, ...], normalization: str, mesh, micro: int
):
    from svebi_jax import sharding as S

    fn = _response_fn.__wrapped__(apply_fn, layers, normalization, micro)
    return S.data_parallel(fn, mesh, in_axes=(None, 0), out_axes=0)


def compute_responses(
    apply_fn: ApplyFn,
    params: Any,
    data: Any,
    *,
    layers: Sequence[str] | None = None,
    batch_size: int = 256,
    normalization: Normalization = "energy",
    labels: Any = None,
    mesh: Any = None,
    checkpoint_dir: str | None = None,
    shard_batches: int = 16,
    on_shard: Callable[[int], None] | None = None,
) -> Responses:
    """Streams a dataset through the network and returns its responses ``X`` and labels ``L``.

    The forward pass (``apply_fn(params, images, record="mean")``) and the reduction to
    responses run in one jit-compiled function of a single batch shape ``[b, H, W, C]``
    (``b = min(batch_size, N)`` for an in-memory set); the last batch is zero-padded to ``b``
    and the padding rows are dropped. Only one batch of spike maps exists at a time, and the
    compiled function is reused across calls with the same ``apply_fn`` (new ``params`` or
    images of the same shape do not recompile). A batch whose float32 time-mean maps would
    exceed :data:`MAP_BYTES_PER_PASS` is run in micro-batches of images inside the compiled
    function, so memory is bounded whatever ``batch_size`` is; with a time-chunked forward
    pass (:func:`svebi_jax.layers.run_time_batched`) the maps are accumulated as spike counts
    chunk by chunk, and no ``[T, B, H, W, C]`` spike trains of all layers exist at once.

    Args:
      apply_fn: the model, :class:`svebi_jax.protocols.ApplyFn` (e.g. from
        :func:`svebi_jax.models.functional`).
      params: parameter pytree of ``apply_fn``.
      data: a :class:`svebi_jax.data.Dataset` (uses ``.images`` and ``.labels``), an
        ``[N, H, W, C]`` float image array, or an iterable of ``(images, labels)`` batches
        (see :mod:`svebi_jax.batching`).
      layers: conv layers to use, in column order; default all recorded layers in the order
        the network records them (input to output).
      batch_size: images per compiled batch (positive int).
      normalization: see :func:`filter_responses`.
      labels: optional ``[N]`` int true labels (overrides a dataset's labels).
      mesh: optional :class:`jax.sharding.Mesh` (:func:`svebi_jax.sharding.make_mesh`):
        every batch is split over the devices (:func:`svebi_jax.sharding.data_parallel`),
        parameters replicated. ``None`` (default): one device.
      checkpoint_dir: optional directory for resumable extraction: every ``shard_batches``
        batches the rows computed so far are written as ``shard-NNNNN.npz``
        (:class:`svebi_jax.resume.ShardStore`, atomic writes). A rerun with the same
        ``checkpoint_dir``, model, parameters, data and settings loads the finished shards,
        skips their batches and computes only the rest; the result is the same bit for bit
        as an uninterrupted run. A directory written by another run is refused.
      shard_batches: batches per shard (positive int).
      on_shard: called as ``on_shard(k)`` after shard ``k`` is on disk (an exception raised
        there stops the extraction; rerunning resumes after shard ``k``).

    Returns:
      :class:`Responses` with ``X [N, m]``, ``L [N, K]`` one-hot of the predicted class,
      ``predictions [N]``, ``labels [N]`` (or ``None``) and the column ``index``.

    Raises:
      ValueError: bad ``batch_size``, ``normalization``, unknown layers, no image at all
        (``N = 0``, named as the images), images that are not finite float
        ``[N, H, W, C]`` arrays (integer images are refused, not rescaled) or
        labels that are not ``[N]`` ints in ``[0, K)``.
      TypeError: traced ``data`` (responses are streamed on the host).
    """
    _check_normalization(normalization)
    batch_size = _check_positive_int("batch_size", batch_size)
    if V.is_tracer(data) or V.is_tracer(getattr(data, "images", None)):
        raise TypeError("data must be concrete (compute_responses streams on the host)")
    n = _num_images(data)
    if n == 0:
        raise ValueError(
            "images: got an empty set (N = 0 images); responses need at least one image"
        )
    if n is not None:
        batch_size = min(batch_size, n)
    batches = batching.iter_batches(data, batch_size, labels=labels, name="images")
    first = next(batches, None)
    if first is None:
        raise ValueError("images: data delivered no batch (0 images); need at least one image")
    x0 = first.images

    # Layer names and channel counts from the abstract forward pass (no compute).
    abstract = jax.eval_shape(
        lambda p, x: apply_fn(p, x, record="mean"),
        params,
        jax.ShapeDtypeStruct(x0.shape, x0.dtype),
    )
    if not abstract.spikes:
        raise ValueError("apply_fn recorded no spiking conv layer with record='mean'")
    index = FilterIndex.from_spike_means(abstract.spikes, layers)
    num_classes = int(abstract.logits.shape[-1])

    per_image = sum(int(np.prod(abstract.spikes[n].shape)) for n in index.layers) * 4
    micro = _micro_batch(x0.shape[0], per_image // max(1, x0.shape[0]))
    if mesh is None:
        fn = batching.cached_builder(_response_fn, apply_fn, index.layers, normalization, micro)
    else:
        from svebi_jax import sharding as S

        mesh = S.check_mesh(mesh)
        rows = S.padded_size(x0.shape[0], mesh) // S.num_shards(mesh)  # per device
        micro = _micro_batch(rows, per_image // max(1, x0.shape[0]))
        fn = batching.cached_builder(
            _sharded_response_fn, apply_fn, index.layers, normalization, mesh, micro
        )
    store = None
    done = 0  # finished shards
    if checkpoint_dir is not None:
        from svebi_jax.resume import ShardStore, params_fingerprint

        shard_batches = _check_positive_int("shard_batches", shard_batches)
        store = ShardStore(
            checkpoint_dir,
            {
                "stage": "compute_responses",
                "params_sha256": params_fingerprint(params),
                "layers": list(index.layers),
                "channels": list(index.channels),
                "num_classes": num_classes,
                "normalization": normalization,
                "batch_size": int(batch_size),
                "shard_batches": int(shard_batches),
                "image_shape": [int(v) for v in x0.shape[1:]],
                "num_images": n,
            },
        )
        done = store.completed()
    parts: list[dict[str, np.ndarray]] = [store.read(k) for k in range(done)]
    pending: list[dict[str, np.ndarray]] = []
    skip = done * shard_batches if store is not None else 0
    for batch in _chain(first, batches):
        if skip > 0:  # rows of a finished shard, already on disk
            skip -= 1
            continue
        if batch.labels is not None:
            V.check_labels(batch.labels[: batch.count], num_classes=num_classes)
        x, pred = fn(params, batch.images)
        row = {"X": np.asarray(x)[: batch.count], "predictions": np.asarray(pred)[: batch.count]}
        if batch.labels is not None:
            row["labels"] = np.asarray(batch.labels[: batch.count])
        pending.append(row)
        if store is not None and len(pending) == shard_batches:
            parts.append(_flush(store, len(parts), pending, on_shard))
            pending = []
    if pending:
        parts.append(_flush(store, len(parts), pending, on_shard) if store else _concat(pending))
    X = np.concatenate([p["X"] for p in parts])
    predictions = np.concatenate([p["predictions"] for p in parts]).astype(np.int32)
    labels = (
        np.concatenate([p["labels"] for p in parts]).astype(np.int32)
        if all("labels" in p for p in parts)
        else None
    )
    onehot = np.zeros((X.shape[0], num_classes), np.float32)
    onehot[np.arange(X.shape[0]), predictions] = 1.0
    return Responses(X, onehot, predictions, labels, index)


def _concat(rows: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    keys = set.intersection(*(set(r) for r in rows))
    return {k: np.concatenate([r[k] for r in rows]) for k in sorted(keys)}


def _flush(store, k: int, rows, on_shard) -> dict[str, np.ndarray]:
    """Writes shard ``k`` of ``rows`` and returns it (as read back: the bits on disk)."""
    store.write(k, _concat(rows))
    if on_shard is not None:
        on_shard(k)
    return store.read(k)


def _num_images(data) -> int | None:
    images = getattr(data, "images", data)
    shape = getattr(images, "shape", None)
    return int(shape[0]) if shape else None


def _chain(first, rest):
    yield first
    yield from rest

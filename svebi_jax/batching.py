"""Batching shared by every stage that streams images through a compiled function.

One compiled shape per function: images are cut into batches of a fixed size ``b`` and the
last batch is zero-padded to ``b`` (its padding rows are dropped from the results), so a
dataset of any length compiles once. Used by :mod:`~svebi_jax.responses`,
:mod:`~svebi_jax.interpret`, :mod:`~svebi_jax.train` (evaluation),
:mod:`~svebi_jax.metrics.ablation` and :mod:`~svebi_jax.metrics.insdel`.

**Data interface.** Stages accept their images through :func:`iter_batches`, which takes

* an in-memory :class:`svebi_jax.data.Dataset` (``.images``, ``.labels``) or any object with
  ``images`` and ``labels`` arrays,
* an ``[N, H, W, C]`` array,
* any object with a ``batches(batch_size)`` method — a streaming
  :class:`svebi_jax.data.stream.ImageSource` — or any iterable, yielding
  :class:`svebi_jax.data.stream.Batch` es (rows whose ``mask`` is False are dropped),
  ``(images, labels)`` pairs, bare ``images`` or ``{"image": ..., "label": ...[, "mask"]}``
  mappings,

so the same stage runs on a small in-memory set and on a dataset that never fits in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, NamedTuple

import jax
import numpy as np

from svebi_jax import _validation as V

__all__ = [
    "Batch",
    "cached_builder",
    "chunk_bounds",
    "iter_batches",
    "map_batches",
    "pad_rows",
    "power_of_two_bucket",
]


def chunk_bounds(n: int, size: int) -> Iterator[tuple[int, int]]:
    """Yields ``(start, stop)`` of consecutive chunks of ``size`` covering ``range(n)``."""
    for start in range(0, n, size):
        yield start, min(start + size, n)


def pad_rows(x: np.ndarray, size: int) -> np.ndarray:
    """Pads ``[n, ...]`` with zero rows to ``[size, ...]`` (keeps one compiled shape)."""
    if x.shape[0] == size:
        return x
    pad = np.zeros((size - x.shape[0],) + x.shape[1:], x.dtype)
    return np.concatenate([x, pad], axis=0)


def power_of_two_bucket(n: int, batch_size: int) -> int:
    """Batch size for ``n`` items: ``batch_size``, or the next power of two ``>= n`` below it."""
    return min(batch_size, 1 << max(0, (n - 1).bit_length()))


def cached_builder(builder: Callable, *args):
    """Calls an ``functools.lru_cache``-wrapped builder of jitted functions.

    The builders are keyed by a model's ``apply_fn`` and static options, so calling a public
    function twice with the same model reuses one compiled function. An unhashable argument
    (e.g. a user's ``apply_fn`` object without ``__hash__``) builds an uncached one.
    """
    try:
        hash(args)
    except TypeError:
        return builder.__wrapped__(*args)
    return builder(*args)


class Batch(NamedTuple):
    """One fixed-size batch of a stream.

    Attributes:
      images: ``[b, H, W, C]`` float images; rows ``count:`` are zero padding.
      labels: ``[b]`` int32 labels (padding rows 0), or ``None`` when the data has none.
      count: number of real rows.
    """

    images: np.ndarray
    labels: np.ndarray | None
    count: int


def _split_item(item) -> tuple[Any, Any]:
    """``(images, labels | None)`` of one incoming batch; masked-out rows are dropped."""
    if hasattr(item, "images") and hasattr(item, "mask"):  # svebi_jax.data.stream.Batch
        keep = np.asarray(item.mask, bool)
        labels = getattr(item, "labels", None)
        return np.asarray(item.images)[keep], None if labels is None else np.asarray(labels)[keep]
    if isinstance(item, Mapping):
        images = item.get("image", item.get("images"))
        if images is None:
            raise ValueError(f"data: a batch mapping needs an 'image' key, got keys {list(item)}")
        labels = item.get("label", item.get("labels"))
        if "mask" in item:
            keep = np.asarray(item["mask"], bool)
            images = np.asarray(images)[keep]
            labels = None if labels is None else np.asarray(labels)[keep]
        return images, labels
    if isinstance(item, tuple) and len(item) == 2:
        return item
    return item, None


def _source(data, batch_size: int) -> tuple[Iterable, int | None]:
    """``(iterable of (images, labels) chunks, N or None)`` for any accepted ``data``."""
    if hasattr(data, "images") and hasattr(data, "labels"):
        images, labels = np.asarray(data.images), np.asarray(data.labels)
        n = images.shape[0]
        return ((images[a:b], labels[a:b]) for a, b in chunk_bounds(n, batch_size)), n
    if isinstance(data, np.ndarray | jax.Array) or (
        hasattr(data, "shape") and hasattr(data, "dtype")
    ):
        if V.is_tracer(data):
            raise TypeError("data must be concrete: batches are streamed on the host")
        images = np.asarray(data)
        n = images.shape[0] if images.ndim else 0
        return ((images[a:b], None) for a, b in chunk_bounds(n, batch_size)), n
    if hasattr(data, "batches") and callable(data.batches):
        return (_split_item(item) for item in data.batches(batch_size)), None
    if isinstance(data, Iterable) and not isinstance(data, str | bytes | Mapping):
        return (_split_item(item) for item in data), None
    raise TypeError(
        "data must be a Dataset, an [N, H, W, C] image array, or an iterable of (images, "
        f"labels) batches, got {type(data).__name__}"
    )


def iter_batches(
    data,
    batch_size: int,
    *,
    labels=None,
    image_shape=None,
    name: str = "images",
    pad: bool = True,
) -> Iterator[Batch]:
    """Streams ``data`` (see the module docstring) in batches of exactly ``batch_size`` rows.

    Every batch is checked with :func:`svebi_jax._validation.check_images` (float, finite,
    ``image_shape``) and, when present, its labels with
    :func:`~svebi_jax._validation.check_labels`. Larger incoming batches are split, smaller
    ones zero-padded (``pad=True``), so the consumer sees one shape.

    Args:
      data: images or batches, see the module docstring.
      batch_size: rows per yielded batch (positive int).
      labels: optional ``[N]`` labels for an image array (overrides a dataset's labels).
      image_shape: expected ``(H, W, C)``, or ``None`` to take the first batch's.
      name: argument name used in error messages.
      pad: zero-pad the last batch to ``batch_size`` (``False``: it may be shorter).

    Yields:
      :class:`Batch` with host NumPy arrays.
    """
    batch_size = V.check_positive_int("batch_size", batch_size)
    source, n = _source(data, batch_size)
    if n is not None:  # in memory: check everything before any work
        whole = data.images if hasattr(data, "images") else data
        V.check_images(np.asarray(whole), name=name, image_shape=image_shape)
    if labels is not None:
        if n is None:
            raise ValueError("labels can only be given with an image array or a Dataset")
        labels = V.check_labels(labels, n=n, name="labels")
        bounds = chunk_bounds(n, batch_size)
        source = ((x, labels[a:b]) for (x, _), (a, b) in zip(source, bounds, strict=True))
    seen = 0
    for images, lab in source:
        images = V.check_images(np.asarray(images), name=name, image_shape=image_shape)
        image_shape = images.shape[1:]
        if lab is not None:
            lab = V.check_labels(np.asarray(lab), n=images.shape[0], name="labels")
        for a, b in chunk_bounds(images.shape[0], batch_size):
            x = images[a:b]
            y = None if lab is None else lab[a:b]
            count = b - a
            if pad:
                x = pad_rows(x, batch_size)
                y = None if y is None else pad_rows(y, batch_size)
            seen += count
            yield Batch(x, y, count)
    if seen == 0:
        raise ValueError(f"{name} must hold at least one image, got none")


def map_batches(fn: Callable[[Any], Any], images, batch_size: int, *, pad: bool = True) -> Any:
    """Applies ``fn`` to ``[b, ...]`` slices of ``images`` and concatenates the results.

    ``fn`` maps a batch to a pytree of arrays with a leading batch axis; padding rows (when
    ``pad``) are dropped. Memory is bounded by one batch of ``fn``'s intermediates.

    Args:
      fn: ``images [b, ...] -> pytree of [b, ...] arrays``.
      images: ``[N, ...]`` host or device array.
      batch_size: rows per call.
      pad: pad the last slice to ``batch_size`` (one compiled shape) or pass it short.

    Returns:
      The pytree of ``fn`` with ``[N, ...]`` NumPy leaves.
    """
    batch_size = V.check_positive_int("batch_size", batch_size)
    n = int(np.shape(images)[0])
    parts = []
    for a, b in chunk_bounds(n, batch_size):
        x = images[a:b]
        if pad:
            x = pad_rows(np.asarray(x), batch_size)
        out = fn(x)
        parts.append(jax.tree.map(lambda v, k=b - a: np.asarray(v)[:k], out))
    if not parts:
        raise ValueError("images must hold at least one image, got N = 0")
    return jax.tree.map(lambda *vs: np.concatenate(vs, axis=0), *parts)

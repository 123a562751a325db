"""In-memory image classification datasets and deterministic helpers.

A :class:`Dataset` holds a whole split as two NumPy arrays: images ``[N, H, W, C]`` float32 in
``[0, 1]`` and labels ``[N]`` int32. The SNN pipelines feed pixel intensities directly (rate or
latency coding of values in ``[0, 1]``), so no normalisation is applied by default; use
:func:`normalize` explicitly when a model needs standardised inputs.

All randomness comes from ``np.random.default_rng(seed)``: the same seed gives the same split,
subset and batch order on every platform.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Iterator
from typing import Any

import jax
import numpy as np

__all__ = ["Dataset", "split", "subset", "batches", "normalize"]


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """A labelled image dataset held in memory.

    Attributes:
      images: ``[N, H, W, C]`` float32 pixel intensities in ``[0, 1]``.
      labels: ``[N]`` int32 class indices in ``[0, num_classes)``.
      num_classes: Number of classes (positive int).
      name: Human-readable name, e.g. ``"mnist-5k"`` or ``"mnist-test"``.

    Arrays are converted on construction (``images`` to float32, integer ``labels`` to int32);
    construction raises ``ValueError``/``TypeError`` if the shapes, dtypes or ranges are wrong.
    Instances compare by identity (arrays have no single truth value).
    """

    images: np.ndarray
    labels: np.ndarray
    num_classes: int
    name: str

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise TypeError(f"name must be a str, got {type(self.name).__name__}")
        if (
            isinstance(self.num_classes, bool)
            or not isinstance(self.num_classes, numbers.Integral)
            or self.num_classes < 1
        ):
            raise ValueError(f"num_classes must be a positive int, got {self.num_classes!r}")
        object.__setattr__(self, "num_classes", int(self.num_classes))

        images = np.asarray(self.images)
        if images.ndim != 4:
            raise ValueError(
                f"images must have rank 4 [N, H, W, C], got shape {images.shape} ({self.name})"
            )
        if not (
            np.issubdtype(images.dtype, np.floating) or np.issubdtype(images.dtype, np.integer)
        ):
            raise TypeError(f"images must be a real numeric array, got dtype {images.dtype}")
        images = images.astype(np.float32, copy=False)
        if images.size:
            lo, hi = float(images.min()), float(images.max())
            if not (lo >= 0.0 and hi <= 1.0):  # also rejects NaN
                raise ValueError(
                    f"images must lie in [0, 1], got range [{lo}, {hi}] ({self.name}); "
                    "divide uint8 pixels by 255"
                )

        labels = np.asarray(self.labels)
        if labels.ndim != 1:
            raise ValueError(f"labels must have rank 1 [N], got shape {labels.shape}")
        if not np.issubdtype(labels.dtype, np.integer):
            raise TypeError(f"labels must have an integer dtype, got {labels.dtype}")
        if labels.shape[0] != images.shape[0]:
            raise ValueError(
                f"labels length must match images (N={images.shape[0]}), got {labels.shape[0]}"
            )
        if labels.size:
            lo, hi = int(labels.min()), int(labels.max())
            if lo < 0 or hi >= self.num_classes:
                raise ValueError(
                    f"labels must lie in [0, num_classes={self.num_classes}), "
                    f"got range [{lo}, {hi}] ({self.name})"
                )
        object.__setattr__(self, "images", images)
        object.__setattr__(self, "labels", labels.astype(np.int32, copy=False))

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def batches(
        self, batch_size: int, *, seed: int | None = None, drop_remainder: bool = False
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """One epoch of ``(images, labels)`` batches (:func:`batches`); the data interface
        every pipeline stage takes (:mod:`svebi_jax.batching`), which streaming sources
        implement too."""
        return batches(self, batch_size, seed=seed, drop_remainder=drop_remainder)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(H, W, C)`` of one image."""
        return tuple(int(d) for d in self.images.shape[1:])  # type: ignore[return-value]

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, images={self.images.shape} {self.images.dtype}, "
            f"num_classes={self.num_classes})"
        )


def _check_seed(seed: Any, arg: str = "seed") -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"{arg} must be a non-negative int, got {seed!r}")
    return int(seed)


def _take(ds: Dataset, idx: np.ndarray, name: str) -> Dataset:
    return Dataset(ds.images[idx], ds.labels[idx], ds.num_classes, name)


def split(ds: Dataset, test_fraction: float, *, seed: int) -> tuple[Dataset, Dataset]:
    """Randomly partitions ``ds`` into disjoint train and test parts.

    A permutation ``p = default_rng(seed).permutation(N)`` is drawn; the test part is
    ``p[:n_test]`` and the train part ``p[n_test:]``, both in permuted order, with

    .. math::
      n_\\text{test} = \\operatorname{round}(N \\cdot \\text{test\\_fraction}).

    Not stratified. The same ``seed`` always gives the same partition.

    Args:
      ds: Dataset with ``N >= 2`` examples.
      test_fraction: Fraction of examples in the test part, in ``(0, 1)``; must leave at least
        one example on each side.
      seed: Non-negative int seed.

    Returns:
      ``(train, test)`` datasets named ``"<name>/train"`` and ``"<name>/test"``.
    """
    train_idx, test_idx = split_indices(len(ds), test_fraction, seed=seed)
    test = _take(ds, test_idx, f"{ds.name}/test")
    train = _take(ds, train_idx, f"{ds.name}/train")
    return train, test


def _check_fraction(test_fraction: Any) -> float:
    if (
        isinstance(test_fraction, bool)
        or not isinstance(test_fraction, numbers.Real)
        or not 0.0 < float(test_fraction) < 1.0
    ):
        raise ValueError(f"test_fraction must be a number in (0, 1), got {test_fraction!r}")
    return float(test_fraction)


def split_indices(n: int, test_fraction: float, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``(train, test)`` index arrays :func:`split` uses for ``N = n`` examples.

    ``p = default_rng(seed).permutation(n)``; test ``p[:n_test]``, train ``p[n_test:]`` with
    ``n_test = round(n * test_fraction)``. Shared with the streaming sources
    (:meth:`svebi_jax.data.ImageSource.split`), so a split of a stream and of the same data in
    memory hold the same examples in the same order.

    Args:
      n: Number of examples, ``>= 2``.
      test_fraction: Number in ``(0, 1)`` leaving at least one example on each side.
      seed: Non-negative int seed.

    Returns:
      ``(train, test)``: int64 index arrays ``[n - n_test]`` and ``[n_test]``.
    """
    seed = _check_seed(seed)
    fraction = _check_fraction(test_fraction)
    n_test = int(round(n * fraction))
    if not 1 <= n_test <= n - 1:
        raise ValueError(
            f"test_fraction={test_fraction} of N={n} examples gives {n_test} test examples; "
            "both parts must be non-empty"
        )
    perm = np.random.default_rng(seed).permutation(n)
    return perm[n_test:], perm[:n_test]


def subset(ds: Dataset, n: int, *, seed: int | None = None) -> Dataset:
    """Returns ``n`` examples of ``ds``.

    Args:
      ds: Dataset with ``N`` examples.
      n: Number of examples to keep, ``1 <= n <= N``.
      seed: ``None`` keeps the first ``n`` examples in order; an int keeps
        ``default_rng(seed).permutation(N)[:n]`` (random, without replacement, in that order).

    Returns:
      Dataset of length ``n`` named ``"<name>[:n]"`` or ``"<name>[n@seed]"``.
    """
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or not 1 <= n <= len(ds):
        raise ValueError(f"n must be an int in [1, {len(ds)}], got {n!r}")
    n = int(n)
    if seed is None:
        return _take(ds, np.arange(n), f"{ds.name}[:{n}]")
    seed = _check_seed(seed)
    idx = np.random.default_rng(seed).permutation(len(ds))[:n]
    return _take(ds, idx, f"{ds.name}[{n}@{seed}]")


def batches(
    ds: Dataset,
    batch_size: int,
    *,
    seed: int | None = None,
    drop_remainder: bool = False,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Iterates over one epoch of ``ds`` in mini-batches.

    With ``seed=None`` the order is ``0, 1, ..., N-1``; otherwise it is
    ``default_rng(seed).permutation(N)``. Each batch gathers its rows with one fancy-indexing
    operation. Every example appears exactly once per epoch (unless ``drop_remainder`` drops the
    last short batch). For a different order each epoch pass e.g. ``seed=base_seed + epoch``.

    Arguments are validated when ``batches`` is called, not on the first ``next``.

    Args:
      ds: Dataset with ``N`` examples.
      batch_size: Positive int ``B``.
      seed: ``None`` for the stored order, or a non-negative int seed for a shuffled epoch.
      drop_remainder: If ``True``, drop the final batch when it has fewer than ``B`` examples.

    Returns:
      Iterator of ``(images, labels)`` with images ``[B, H, W, C]`` float32 and labels ``[B]``
      int32 (the last batch may be shorter unless ``drop_remainder``).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral):
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    batch_size = int(batch_size)
    n = len(ds)
    if seed is None:
        order = np.arange(n)
    else:
        order = np.random.default_rng(_check_seed(seed)).permutation(n)
    stop = (n // batch_size) * batch_size if drop_remainder else n

    def _gen() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for start in range(0, stop, batch_size):
            idx = order[start : min(start + batch_size, stop)]
            yield ds.images[idx], ds.labels[idx]

    return _gen()


def normalize(images: Any, mean: Any, std: Any) -> Any:
    """Standardises images channel-wise.

    .. math::
      y_{n,h,w,c} = \\frac{x_{n,h,w,c} - \\mu_c}{\\sigma_c}

    Pure and jit-compatible; works on NumPy arrays (returns NumPy) and JAX arrays (returns JAX).
    The default pipeline does *not* call this: SNNs are fed ``[0, 1]`` intensities directly.

    Args:
      images: ``[..., C]`` float array (e.g. ``[N, H, W, C]`` float32).
      mean: Scalar or ``[C]`` channel means :math:`\\mu`.
      std: Scalar or ``[C]`` channel standard deviations :math:`\\sigma`, all finite and > 0.

    Returns:
      Array with the shape of ``images``.
    """
    if not isinstance(images, jax.core.Tracer):
        images = np.asarray(images) if not isinstance(images, jax.Array) else images
        if not np.issubdtype(images.dtype, np.floating):
            raise TypeError(f"images must be a float array, got dtype {images.dtype}")
    channels = images.shape[-1] if images.ndim else None
    dtype = images.dtype
    checked = []
    for arg, value in (("mean", mean), ("std", std)):
        if isinstance(value, jax.core.Tracer):
            checked.append(value)
            continue
        if isinstance(value, jax.Array):
            value = np.asarray(value)
        arr = np.asarray(value, dtype=dtype)
        if arr.ndim > 1 or (arr.ndim == 1 and arr.shape[0] not in (1, channels)):
            raise ValueError(
                f"{arg} must be a scalar or have shape [C]=[{channels}], got shape {arr.shape}"
            )
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{arg} must be finite, got {value!r}")
        if arg == "std" and not np.all(arr > 0):
            raise ValueError(f"std must be positive, got {value!r}")
        checked.append(arr)
    mean_arr, std_arr = checked
    return (images - mean_arr) / std_arr

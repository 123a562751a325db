"""Loading TensorFlow Datasets (``tfds``) image classification splits.

``tensorflow-datasets`` is an optional dependency (``pip install svebi-jax[tfds]``) and is
imported only when :func:`load_tfds` is called.
"""

from __future__ import annotations

import importlib
import os

import numpy as np

from svebi_jax.data.dataset import Dataset

__all__ = ["load_tfds"]


def _import_tfds(caller: str = "load_tfds"):
    try:
        return importlib.import_module("tensorflow_datasets")
    except ImportError as err:
        raise ImportError(
            f"{caller} needs tensorflow-datasets, which is not installed; install the 'tfds' "
            "extra: pip install svebi-jax[tfds]"
        ) from err


def _to_unit_float(images: np.ndarray, name: str) -> np.ndarray:
    if images.dtype == np.uint8:
        return images.astype(np.float32) / np.float32(255.0)
    if np.issubdtype(images.dtype, np.floating):
        images = images.astype(np.float32)
        if images.size and not (images.min() >= 0.0 and images.max() <= 1.0):
            raise ValueError(
                f"tfds dataset {name!r} has float images outside [0, 1] "
                f"(range [{images.min()}, {images.max()}]); expected uint8 or [0, 1] floats"
            )
        return images
    raise TypeError(
        f"tfds dataset {name!r} has images of dtype {images.dtype}; expected uint8 or float"
    )


def load_tfds(
    name: str,
    split: str,
    *,
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    num_classes: int | None = None,
) -> Dataset:
    """Loads a whole tfds image classification split into memory.

    Calls ``tensorflow_datasets.load(name, split=split, data_dir=data_dir, download=download,
    batch_size=-1, as_supervised=True)`` and converts the result with ``tfds.as_numpy``.

    Args:
      name: tfds dataset name, e.g. ``"mnist"``, ``"fashion_mnist"``, ``"cifar10"``.
      split: tfds split string, e.g. ``"train"``, ``"test"``, ``"train[:10%]"``.
      data_dir: tfds data directory; ``None`` uses the tfds default.
      download: Whether tfds may download and prepare the dataset.
      num_classes: Number of classes; ``None`` uses ``max(label) + 1``.

    Returns:
      Dataset named ``"tfds:<name>/<split>"`` with images ``[N, H, W, C]`` float32 in
      ``[0, 1]`` (uint8 / 255; the channel dimension is kept, and added as ``C=1`` when tfds
      returns ``[N, H, W]``) and labels ``[N]`` int32.

    Raises:
      ImportError: If ``tensorflow-datasets`` is not installed (names the ``tfds`` extra).
      ValueError: If the images or labels have an unexpected shape.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty tfds dataset name, got {name!r}")
    if not isinstance(split, str) or not split:
        raise ValueError(f"split must be a non-empty tfds split string, got {split!r}")
    tfds = _import_tfds()
    data = tfds.load(
        name,
        split=split,
        data_dir=None if data_dir is None else os.fspath(data_dir),
        download=download,
        batch_size=-1,
        as_supervised=True,
    )
    images, labels = tfds.as_numpy(data)
    images, labels = np.asarray(images), np.asarray(labels)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4:
        raise ValueError(
            f"tfds dataset {name!r} split {split!r} must give images [N, H, W(, C)], "
            f"got shape {images.shape}"
        )
    if labels.ndim != 1:
        raise ValueError(
            f"tfds dataset {name!r} split {split!r} must give labels [N], got shape {labels.shape}"
        )
    if num_classes is None:
        num_classes = int(labels.max()) + 1 if labels.size else 1
    return Dataset(
        images=_to_unit_float(images, name),
        labels=labels,
        num_classes=num_classes,
        name=f"tfds:{name}/{split}",
    )

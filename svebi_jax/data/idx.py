"""Readers for the IDX format of MNIST / Fashion-MNIST.

An IDX file is a header followed by the array in C order, big-endian:

* bytes 0-1: zero;
* byte 2: element type code (``0x08`` uint8, ``0x09`` int8, ``0x0B`` int16, ``0x0C`` int32,
  ``0x0D`` float32, ``0x0E`` float64);
* byte 3: number of dimensions ``ndim``;
* ``ndim`` big-endian uint32 sizes, then ``prod(sizes) * itemsize`` bytes of data.

Files may be gzip-compressed (detected from the gzip magic bytes, whatever the file name).
"""

from __future__ import annotations

import gzip
import math
import os
import pathlib
import zlib

import numpy as np

from svebi_jax.data.dataset import Dataset

__all__ = [
    "read_idx",
    "open_idx",
    "open_idx_split",
    "parse_idx_header",
    "load_idx_dir",
    "idx_file_names",
]

_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"
_SPLIT_PREFIX = {"train": "train", "test": "t10k"}


def _read_bytes(path: pathlib.Path) -> bytes:
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:
        raise ValueError(f"IDX file {path} is a corrupt or truncated gzip stream: {err}") from err


def parse_idx_header(raw: bytes, path: str | os.PathLike) -> tuple[np.dtype, tuple[int, ...], int]:
    """Parses the header at the start of an (uncompressed) IDX byte string.

    Args:
      raw: The file's bytes (at least the header; the data may be absent).
      path: The file, for error messages.

    Returns:
      ``(dtype, dims, header_len)``: big-endian element type, array shape, header bytes.

    Raises:
      ValueError: Naming the file, if the magic bytes are not zero, the type code is unknown
        or the dimension list is incomplete.
    """
    if len(raw) < 4:
        raise ValueError(f"IDX file {path} is truncated: {len(raw)} bytes, no 4-byte header")
    if raw[0] != 0 or raw[1] != 0:
        raise ValueError(
            f"IDX file {path} has a bad magic number: first two bytes must be 0x00 0x00, "
            f"got {raw[:4].hex()} (not an IDX file?)"
        )
    code, ndim = raw[2], raw[3]
    if code not in _DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in _DTYPES)
        raise ValueError(f"IDX file {path} has unknown type code 0x{code:02X} (known: {known})")
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise ValueError(
            f"IDX file {path} is truncated: header declares {ndim} dimensions "
            f"({header_len} header bytes), file has {len(raw)} bytes"
        )
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    return _DTYPES[code], dims, header_len


def _check_data_length(path, dims, dtype, expected: int, found: int) -> None:
    if found < expected:
        raise ValueError(
            f"IDX file {path} is truncated: header promises shape {dims} of {dtype.name} "
            f"({expected} data bytes), found {found}"
        )
    if found > expected:
        raise ValueError(
            f"IDX file {path} has {found - expected} trailing bytes after the "
            f"{expected} data bytes promised by its header (shape {dims}); corrupt file?"
        )


def open_idx(path: str | os.PathLike) -> np.ndarray:
    """Opens an IDX file without reading it all: memory-mapped if raw, decompressed if gzip.

    A raw (uncompressed) file is returned as a read-only ``np.memmap`` over its data bytes, so
    only the pages actually indexed are read (memory stays bounded whatever the file size);
    a gzip file cannot be mapped and is decompressed into memory like :func:`read_idx`.

    Args:
      path: Path to the ``*-ubyte`` or ``*-ubyte.gz`` file.

    Returns:
      Array of the header's shape; big-endian dtypes are kept as stored for memory maps
      (convert elements with ``.astype``).

    Raises:
      FileNotFoundError, ValueError: As :func:`read_idx`.
    """
    path = pathlib.Path(path)
    with open(path, "rb") as f:
        head = f.read(4 + 4 * 255)
    if head[:2] == _GZIP_MAGIC:
        return read_idx(path)
    dtype, dims, header_len = parse_idx_header(head, path)
    expected = math.prod(dims) * dtype.itemsize
    _check_data_length(path, dims, dtype, expected, path.stat().st_size - header_len)
    if expected == 0:
        return np.zeros(dims, dtype)
    return np.memmap(path, dtype=dtype, mode="r", offset=header_len, shape=dims)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Reads one IDX file (raw or gzip-compressed) into a NumPy array.

    Args:
      path: Path to the ``*-ubyte`` or ``*-ubyte.gz`` file.

    Returns:
      Array with the shape stored in the header and the element type of its type code, in
      native byte order (e.g. ``[N, 28, 28]`` uint8 for MNIST images, ``[N]`` uint8 for labels).

    Raises:
      FileNotFoundError: If ``path`` does not exist.
      ValueError: Naming the file, if the header is corrupt (magic bytes not zero, unknown type
        code, incomplete dimension list) or the data is shorter or longer than the header says.
    """
    path = pathlib.Path(path)
    raw = _read_bytes(path)
    dtype, dims, header_len = parse_idx_header(raw, path)
    expected = math.prod(dims) * dtype.itemsize
    found = len(raw) - header_len
    _check_data_length(path, dims, dtype, expected, found)
    data = np.frombuffer(raw, dtype=dtype, count=math.prod(dims), offset=header_len)
    return data.reshape(dims).astype(dtype.newbyteorder("="))


def idx_file_names(split: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """File names accepted for a split, in lookup order.

    Args:
      split: ``"train"`` or ``"test"``.

    Returns:
      ``(image_names, label_names)``, e.g. for ``"test"`` images
      ``t10k-images-idx3-ubyte[.gz]`` and ``t10k-images.idx3-ubyte[.gz]``.
    """
    if split not in _SPLIT_PREFIX:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    prefix = _SPLIT_PREFIX[split]

    def names(kind: str, rank: int) -> tuple[str, ...]:
        bases = (f"{prefix}-{kind}-idx{rank}-ubyte", f"{prefix}-{kind}.idx{rank}-ubyte")
        return tuple(b + ext for b in bases for ext in ("", ".gz"))

    return names("images", 3), names("labels", 1)


def _find(root: pathlib.Path, names: tuple[str, ...], what: str) -> pathlib.Path:
    for name in names:
        if (root / name).is_file():
            return root / name
    raise FileNotFoundError(f"no {what} file in {root}; looked for: {', '.join(names)}")


def infer_num_classes(labels: np.ndarray, path: pathlib.Path) -> int:
    """``max(label) + 1``, refused when some class below the maximum never occurs.

    A class-per-label file of a classification split (MNIST, Fashion-MNIST, ...) holds every
    class; a gap means a corrupt byte (one bad byte in t10k-labels would otherwise make a
    256-class dataset whose model silently scores 0 on those classes).
    """
    if not labels.size:
        return 1
    counts = np.bincount(labels.astype(np.int64))
    missing = np.flatnonzero(counts == 0)
    if missing.size:
        rare = np.flatnonzero((counts > 0) & (counts <= max(1, labels.size // 1000)))
        raise ValueError(
            f"labels in {path} skip class(es) {missing[:10].tolist()}"
            f"{' ...' if missing.size > 10 else ''} below the largest label {labels.max()} "
            f"(rare labels: {rare[:10].tolist()}); a corrupt file? Pass num_classes= to load "
            "it anyway"
        )
    return int(counts.size)


def open_idx_split(
    path: str | os.PathLike, split: str, *, mapped: bool
) -> tuple[pathlib.Path, pathlib.Path, np.ndarray, np.ndarray]:
    """Finds and checks a split's image and label files (see :func:`load_idx_dir`).

    Args:
      path: Directory holding the IDX files.
      split: ``"train"`` or ``"test"``.
      mapped: Open with :func:`open_idx` (raw files memory-mapped) instead of
        :func:`read_idx` (read into memory).

    Returns:
      ``(image_path, label_path, images [N, H, W] uint8, labels [N] int)``.

    Raises:
      FileNotFoundError: If ``path`` is not a directory or a file is missing.
      ValueError: If a file is corrupt or the images and labels do not match.
    """
    image_names, label_names = idx_file_names(split)
    root = pathlib.Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"path must be a directory of IDX files, got {str(root)!r}")
    image_path = _find(root, image_names, f"{split} images")
    label_path = _find(root, label_names, f"{split} labels")
    opener = open_idx if mapped else read_idx
    images = opener(image_path)
    labels = np.asarray(opener(label_path))
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(
            f"{image_path} must hold a [N, H, W] uint8 array, got {images.shape} {images.dtype}"
        )
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"{label_path} must hold a [N] integer array, got {labels.shape} {labels.dtype}"
        )
    if labels.shape[0] != images.shape[0]:
        raise ValueError(
            f"{image_path} holds {images.shape[0]} images but {label_path} holds "
            f"{labels.shape[0]} labels"
        )
    return image_path, label_path, images, labels


def load_idx_dir(
    path: str | os.PathLike,
    split: str = "test",
    *,
    num_classes: int | None = None,
) -> Dataset:
    """Loads an MNIST-style directory of IDX files (MNIST, Fashion-MNIST, ...).

    The directory must hold the standard file names, raw or ``.gz``:
    ``train-images-idx3-ubyte``/``train-labels-idx1-ubyte`` for ``split="train"`` and
    ``t10k-images-idx3-ubyte``/``t10k-labels-idx1-ubyte`` for ``split="test"`` (the
    ``-images.idx3-ubyte`` / ``-labels.idx1-ubyte`` dot variants are accepted too).

    Args:
      path: Directory holding the IDX files.
      split: ``"train"`` or ``"test"``.
      num_classes: Number of classes; ``None`` uses ``max(label) + 1`` (10 for MNIST) and
        refuses labels that skip a class (the sign of a corrupt label byte).

    Returns:
      Dataset named ``"<directory name>-<split>"`` with images ``[N, H, W, 1]`` float32 in
      ``[0, 1]`` (uint8 / 255) and labels ``[N]`` int32.

    Raises:
      FileNotFoundError: If ``path`` is not a directory or a file is missing (the message lists
        every name looked for).
      ValueError: If a file is corrupt, the images and labels do not match, or (with
        ``num_classes=None``) the labels skip a class.
    """
    root = pathlib.Path(path)
    _, label_path, images, labels = open_idx_split(root, split, mapped=False)
    if num_classes is None:
        num_classes = infer_num_classes(labels, label_path)
    return Dataset(
        images=images[..., None].astype(np.float32) / np.float32(255.0),
        labels=labels.astype(np.int32),
        num_classes=num_classes,
        name=f"{root.resolve().name}-{split}",
    )

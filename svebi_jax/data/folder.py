"""Loading class-per-folder image datasets (AwA2-style layouts).

Layout::

    root/
      antelope/   *.jpg | *.jpeg | *.png
      zebra/      ...

Each sub-directory is a class; the class index is the position of its name in the sorted list
of sub-directory names, or in ``classes`` when given. Images are decoded with Pillow (installed
with matplotlib), converted to RGB and resized with Pillow's bilinear filter.

Note that the whole split is held in memory as float32: ``N * S * S * 3 * 4`` bytes for image
size ``S`` (about 22 GiB for the 37,322 AwA2 images at ``S=224``); use ``classes`` or a smaller
``image_size`` to load less.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Sequence

import numpy as np

from svebi_jax.data.dataset import Dataset

__all__ = ["load_image_folder", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def _image_files(directory: pathlib.Path) -> list[pathlib.Path]:
    return sorted(
        p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )


def _read_rgb(path: pathlib.Path, image_size: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            rgb = im.convert("RGB").resize(
                (image_size, image_size), resample=Image.Resampling.BILINEAR
            )
            return np.asarray(rgb, dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"cannot decode image file {path}: {err}") from err


def load_image_folder(
    root: str | os.PathLike,
    *,
    image_size: int,
    classes: Sequence[str] | None = None,
) -> Dataset:
    """Loads ``root/<class_name>/*.jpg|*.jpeg|*.png`` into memory.

    Files are taken class by class, each class's files in sorted name order (suffixes matched
    case-insensitively; other files are ignored).

    Args:
      root: Directory with one sub-directory per class.
      image_size: Positive int ``S``; every image is resized to ``S x S`` (bilinear).
      classes: Class (sub-directory) names in label order; ``None`` uses all sub-directories
        of ``root`` in sorted order. Sub-directories not listed are ignored.

    Returns:
      Dataset named ``"folder:<root name>"`` with images ``[N, S, S, 3]`` float32 in ``[0, 1]``
      (RGB uint8 / 255) and labels ``[N]`` int32, ``num_classes = len(classes)``.

    Raises:
      FileNotFoundError: If ``root`` or a listed class directory does not exist.
      ValueError: If ``image_size`` is not a positive int, ``classes`` is empty or has
        duplicates, a class directory holds no image, or an image cannot be decoded.
    """
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size must be a positive int, got {image_size!r}")
    root = pathlib.Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"root must be a directory of class folders, got {str(root)!r}")
    if classes is None:
        classes = sorted(p.name for p in root.iterdir() if p.is_dir())
        if not classes:
            raise ValueError(f"root {str(root)!r} has no class sub-directories")
    else:
        if isinstance(classes, str):
            raise TypeError("classes must be a sequence of class names, not a single str")
        classes = list(classes)
        if not classes:
            raise ValueError("classes must be a non-empty sequence of class names, got []")
        if len(set(classes)) != len(classes):
            raise ValueError(f"classes must not contain duplicates, got {classes}")
        missing = [c for c in classes if not (root / c).is_dir()]
        if missing:
            raise FileNotFoundError(f"class directories {missing} not found under {str(root)!r}")

    files: list[pathlib.Path] = []
    counts: list[int] = []
    for name in classes:
        found = _image_files(root / name)
        if not found:
            raise ValueError(
                f"class directory {str(root / name)!r} holds no {'/'.join(IMAGE_SUFFIXES)} files"
            )
        files.extend(found)
        counts.append(len(found))

    # Decoding is inherently per file; the stacked array is converted in one operation.
    pixels = np.stack([_read_rgb(f, image_size) for f in files])
    labels = np.repeat(np.arange(len(classes), dtype=np.int32), counts)
    return Dataset(
        images=pixels.astype(np.float32) / np.float32(255.0),
        labels=labels,
        num_classes=len(classes),
        name=f"folder:{root.resolve().name}",
    )

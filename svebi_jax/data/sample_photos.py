"""A tiny AwA2-style photo folder built from real photographs that Python packages ship.

No AwA2 (or any photo dataset) can be downloaded on many machines, tests and CI included, yet
the folder pipeline, the SVGG19 experiment and their tests need real photographs in
``root/<class>/*.jpg``. :func:`make_photo_folder` writes such a folder: each class is one
photograph from scikit-image (``skimage.data``) or scikit-learn
(``sklearn.datasets.load_sample_image``), and each image of a class is a seeded random view
of it: a crop (35-100 % of the area, aspect ratio 3/4-4/3), a horizontal flip with
probability 1/2 and a colour jitter (brightness, contrast, saturation, each a factor in
``[0.8, 1.2]``), resized to ``size x size`` (Pillow bilinear) and stored as JPEG (quality 90).

It lives in the library (not the tests) because the AwA2 experiment's small CPU run and the
notebooks use it too. It needs the ``photos`` extra (``pip install svebi-jax[photos]``:
scikit-image and scikit-learn, both of which bundle these photographs in their wheels).
"""

from __future__ import annotations

import importlib
import os
import pathlib
from collections.abc import Sequence

import numpy as np

__all__ = ["make_photo_folder", "PHOTOS"]

#: Class name -> (package, photograph) for every available class, in default order: the
#: first ``n`` are used when ``classes=n``. All are colour photographs bundled with the
#: package (no download).
PHOTOS: dict[str, tuple[str, str]] = {
    "cat": ("skimage", "chelsea"),
    "coffee": ("skimage", "coffee"),
    "rocket": ("skimage", "rocket"),
    "flower": ("sklearn", "flower.jpg"),
    "astronaut": ("skimage", "astronaut"),
    "china": ("sklearn", "china.jpg"),
    "motorcycle": ("skimage", "stereo_motorcycle"),
    "hubble": ("skimage", "hubble_deep_field"),
    "retina": ("skimage", "retina"),
    "cells": ("skimage", "immunohistochemistry"),
}


def _import(module: str, package: str):
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"make_photo_folder needs {package}, which is not installed; install the 'photos' "
            "extra: pip install svebi-jax[photos]"
        ) from err


def load_photo(name: str) -> np.ndarray:
    """The photograph behind class ``name`` as a ``[H, W, 3]`` uint8 RGB array."""
    if name not in PHOTOS:
        raise ValueError(f"unknown photo class {name!r}; available: {sorted(PHOTOS)}")
    package, photo = PHOTOS[name]
    if package == "sklearn":
        datasets = _import("sklearn.datasets", "scikit-learn")
        image = datasets.load_sample_image(photo)
    else:
        data = _import("skimage.data", "scikit-image")
        image = getattr(data, photo)()
        if isinstance(image, tuple):  # stereo_motorcycle: (left, right, disparity)
            image = image[0]
    return np.ascontiguousarray(np.asarray(image, dtype=np.uint8)[..., :3])


def _view(photo: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """One seeded random crop + flip + colour jitter of ``photo``, ``[size, size, 3]`` uint8."""
    from PIL import Image

    h, w = photo.shape[:2]
    area = rng.uniform(0.35, 1.0) * h * w
    aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
    ch = int(min(h, max(8, round(np.sqrt(area / aspect)))))
    cw = int(min(w, max(8, round(np.sqrt(area * aspect)))))
    top = int(rng.integers(0, h - ch + 1))
    left = int(rng.integers(0, w - cw + 1))
    crop = photo[top : top + ch, left : left + cw]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    x = np.asarray(
        Image.fromarray(np.ascontiguousarray(crop)).resize((size, size), Image.Resampling.BILINEAR),
        dtype=np.float32,
    )
    brightness, contrast, saturation = rng.uniform(0.8, 1.2, size=3)
    x = x * brightness
    x = (x - x.mean()) * contrast + x.mean()
    gray = (x @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
    x = gray + (x - gray) * saturation
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def make_photo_folder(
    root: str | os.PathLike,
    *,
    classes: int | Sequence[str] = 4,
    per_class: int = 12,
    size: int = 48,
    seed: int = 0,
) -> pathlib.Path:
    """Writes ``root/<class>/<class>_<i>.jpg``: ``per_class`` random views of one real
    photograph per class (see the module docstring for the augmentation).

    The same arguments write the same files: view ``i`` of a class draws from
    ``default_rng([seed, c, i])``, ``c`` the class's position in :data:`PHOTOS`, so a class
    gets the same images whichever other classes are chosen.

    Args:
      root: Directory to create (parents too); existing files of the same name are replaced.
      classes: Number of classes (the first ``n`` of :data:`PHOTOS`) or class names from it.
      per_class: Images per class (positive int).
      size: Side of the square images in pixels (e.g. 32-64 for CPU tests).
      seed: Non-negative int seed.

    Returns:
      ``root`` as a ``pathlib.Path``, ready for ``FolderSource(root, image_size=size)``.

    Raises:
      ValueError: For an unknown class name or a bad count, size or seed.
      ImportError: If scikit-image or scikit-learn is missing (names the ``photos`` extra).
    """
    from PIL import Image

    if isinstance(classes, bool):
        raise ValueError(f"classes must be an int or a sequence of names, got {classes!r}")
    if isinstance(classes, int):
        if not 1 <= classes <= len(PHOTOS):
            raise ValueError(f"classes must be in [1, {len(PHOTOS)}] as an int, got {classes}")
        names = list(PHOTOS)[:classes]
    else:
        names = [classes] if isinstance(classes, str) else list(classes)
        unknown = [c for c in names if c not in PHOTOS]
        if unknown or not names or len(set(names)) != len(names):
            raise ValueError(f"classes must be distinct names from {list(PHOTOS)}, got {classes!r}")
    for arg, value, low in (("per_class", per_class, 1), ("size", size, 8), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{arg} must be an int >= {low}, got {value!r}")
    root = pathlib.Path(root)
    for name in names:
        c = list(PHOTOS).index(
            name
        )  # the catalogue position: a class looks the same in any selection
        photo = load_photo(name)
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):  # each file is one encode: inherently per image
            view = _view(photo, size, np.random.default_rng([seed, c, i]))
            Image.fromarray(view).save(folder / f"{name}_{i:03d}.jpg", quality=90)
    return root

"""The one boundary where inputs are checked (the lowest room: imports nothing local).

Every public entry point of svebi_jax checks its arguments here, once, before any work. The
rules, which the README's reliability table lists case by case:

* **Static facts** (ranks, shapes, dtypes, choices, Python ints) are checked always, also
  under the caller's ``jit``/``vmap`` (they are known at trace time).
* **Values** (finiteness, ranges, label bounds) are checked eagerly whenever they are concrete:
  outside any transformation, and for constants a traced function closes over (evaluated with
  :func:`jax.ensure_compile_time_eval`, so ``jax.jit(lambda mu: f(X, mu))`` checks ``X``).
* Where a value is **traced**, a check cannot raise. Instead the compiled computation marks
  the affected rows of its result as invalid by setting them to NaN (:func:`flag_rows`), so a
  bad input never yields a plausible-looking number; functions with a status field also clear
  it (e.g. ``LassoResult.converged``).

Images: ``[B, H, W, C]`` (or time-major ``[T, B, H, W, C]`` where a model accepts it), a
*float* dtype, finite. Integer images (e.g. ``uint8`` 0–255) are **refused**, not rescaled:
the scale of an integer image is a guess (uint8 /255, uint16 /65535, 0/1 masks, ...), and a
silent cast was the bug this module exists to prevent; the message says how to rescale.
The library's loaders return float32 in ``[0, 1]``; a model's input domain is not always
``[0, 1]`` (normalized ImageNet inputs, perturbations such as noisy imputation), so entry
points that take model inputs do not enforce a range unless asked (``value_range``).
"""

from __future__ import annotations

import contextlib
import math
import numbers
import os
import pathlib
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

__all__ = [
    "as_class_vector",
    "check_bool",
    "check_choice",
    "check_classes",
    "check_images",
    "check_labels",
    "check_nonnegative_int",
    "check_number",
    "check_out_dir",
    "check_positive_int",
    "concrete_value",
    "flag_rows",
    "is_tracer",
    "rows_finite",
]


# ----------------------------------------------------------------------------- tracers


def is_tracer(x) -> bool:
    """True when ``x`` is an abstract value inside a JAX transformation (skip value checks)."""
    return isinstance(x, jax.core.Tracer)


def concrete_value(x) -> np.ndarray | None:
    """``x`` as a host NumPy array when its value is known, else ``None`` (a tracer).

    A JAX array or a NumPy array captured by a traced function is concrete; reading it never
    stages an operation into the caller's trace.
    """
    if is_tracer(x):
        return None
    with jax.ensure_compile_time_eval():
        return np.asarray(x)


@contextlib.contextmanager
def _eager():
    with jax.ensure_compile_time_eval():
        yield


def all_finite(x) -> bool | None:
    """Whether every entry of ``x`` is finite (on device, no host copy); ``None`` if traced."""
    if is_tracer(x):
        return None
    with _eager():
        x = jnp.asarray(x)
        if not jnp.issubdtype(x.dtype, jnp.inexact):
            return True
        return bool(jnp.all(jnp.isfinite(x)))


# ----------------------------------------------------------------------------- scalars


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_)


def check_positive_int(name: str, value) -> int:
    """``value`` as an ``int >= 1``; ``ValueError`` naming ``name`` otherwise."""
    if not _is_int(value) or value < 1:
        raise ValueError(f"{name} must be a positive int (>= 1), got {value!r}")
    return int(value)


def check_nonnegative_int(name: str, value) -> int:
    """``value`` as an ``int >= 0``; ``ValueError`` naming ``name`` otherwise."""
    if not _is_int(value) or value < 0:
        raise ValueError(f"{name} must be a non-negative int (>= 0), got {value!r}")
    return int(value)


def check_number(
    name: str,
    value,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """``value`` as a finite float within ``[low, high]`` (``(`` / ``)`` when open).

    Raises:
      ValueError: naming ``name`` and the expected interval.
    """
    lo = "(" if low_open else "["
    hi = ")" if high_open else "]"
    interval = f"{lo}{'-inf' if low is None else low}, {'inf' if high is None else high}{hi}"
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a finite number in {interval}, got {value!r}")
    v = float(value)
    bad = not math.isfinite(v)
    if low is not None:
        bad = bad or v < low or (low_open and v == low)
    if high is not None:
        bad = bad or v > high or (high_open and v == high)
    if bad:
        raise ValueError(f"{name} must be a finite number in {interval}, got {value!r}")
    return v


def check_bool(name: str, value) -> bool:
    """``value`` as a ``bool``; ``ValueError`` naming ``name`` otherwise."""
    if not isinstance(value, bool | np.bool_):
        raise ValueError(f"{name} must be a bool, got {value!r}")
    return bool(value)


def check_choice(name: str, value, options: Sequence[str]) -> str:
    """``value`` if it is one of ``options``; ``ValueError`` listing them otherwise."""
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"{name} must be one of {tuple(options)}, got {value!r}")
    return value


# ----------------------------------------------------------------------------- arrays


def check_images(
    images,
    *,
    name: str = "images",
    image_shape: Sequence[int] | None = None,
    time_major: bool = False,
    num_steps: int | None = None,
    value_range: tuple[float, float] | None = None,
    min_batch: int = 1,
) -> Any:
    """Checks a batch of images (shape, float dtype, finite values) and returns it.

    Static checks (always, also under ``jit``): rank ``4`` (``[B, H, W, C]``, or ``5``
    ``[T, B, H, W, C]`` when ``time_major``), at least ``min_batch`` images, no empty axis,
    ``(H, W, C) == image_shape`` when given, ``T == num_steps`` when given, and a real float
    dtype: integer and bool images are refused (see the module docstring).

    Value checks (when concrete): finite, and within ``value_range`` when given.

    Args:
      images: the array to check.
      name: argument name used in messages.
      image_shape: expected ``(H, W, C)`` of one image, or ``None``.
      time_major: accept time-major ``[T, B, H, W, C]`` input too.
      num_steps: expected ``T`` of a time-major input, or ``None``.
      value_range: ``(low, high)`` the pixel values must lie in, or ``None``.
      min_batch: the smallest accepted ``B``.

    Returns:
      ``images`` unchanged (a NumPy array stays on the host; anything else becomes a
      ``jax.Array``), of its own float dtype.

    Raises:
      ValueError: naming ``name``, what was expected and what was given.
    """
    shape = tuple(np.shape(images))
    if not hasattr(images, "dtype"):
        images = np.asarray(images)
    dtype = np.dtype(images.dtype)
    ranks = (4, 5) if time_major else (4,)
    layout = "[B, H, W, C] (or time-major [T, B, H, W, C])" if time_major else "[B, H, W, C]"
    if image_shape is not None:
        layout += f" with (H, W, C) = {tuple(int(v) for v in image_shape)}"
    if len(shape) not in ranks:
        raise ValueError(f"{name} must be {layout}, got shape {shape}")
    if 0 in shape or shape[-4] < min_batch:
        raise ValueError(
            f"{name} must be a non-empty {layout} with B >= {min_batch}, got shape {shape}"
        )
    if image_shape is not None and shape[-3:] != tuple(int(v) for v in image_shape):
        raise ValueError(
            f"{name} must have (H, W, C) = {tuple(int(v) for v in image_shape)} per image, "
            f"got {shape[-3:]} (shape {shape})"
        )
    if len(shape) == 5 and num_steps is not None and shape[0] != num_steps:
        raise ValueError(f"{name}: time-major input needs T = {num_steps} steps, got {shape[0]}")
    if not np.issubdtype(dtype, np.floating):
        hint = ""
        if np.issubdtype(dtype, np.integer):
            hint = (
                "; integer images are not rescaled implicitly: convert them yourself, e.g. "
                "images.astype(np.float32) / 255 for uint8 pixels 0..255"
            )
        raise ValueError(f"{name} must be a float array (pixels in [0, 1]), got {dtype}{hint}")
    if is_tracer(images):
        return images
    if isinstance(images, np.ndarray):
        finite = np.isfinite(images).reshape(-1, *shape[-3:]).all(axis=(1, 2, 3))
        lo_hi = (images.min(), images.max()) if value_range is not None else None
    else:
        with _eager():
            images = jnp.asarray(images)
            finite = np.asarray(jnp.all(jnp.isfinite(images.reshape(-1, *shape[-3:])), (1, 2, 3)))
            lo_hi = (jnp.min(images), jnp.max(images)) if value_range is not None else None
    if not finite.all():
        raise ValueError(
            f"{name} must be finite: {int((~finite).sum())} image(s) contain NaN or inf "
            f"(first at index {int(np.argmin(finite))})"
        )
    if lo_hi is not None:
        lo, hi = float(lo_hi[0]), float(lo_hi[1])
        if lo < value_range[0] or hi > value_range[1]:
            raise ValueError(
                f"{name} must lie in [{value_range[0]}, {value_range[1]}], got values in "
                f"[{lo}, {hi}]"
            )
    return images


def _dtype_of(x) -> np.dtype:
    dtype = getattr(x, "dtype", None)
    return np.dtype(np.asarray(x).dtype if dtype is None else dtype)


def check_labels(
    labels, *, num_classes: int | None = None, n: int | None = None, name: str = "labels"
) -> np.ndarray | Array:
    """Checks ``[N]`` integer class labels (in ``[0, num_classes)`` when concrete).

    Returns:
      ``labels`` as an int32 array (NumPy when concrete, else the traced array cast).

    Raises:
      ValueError: naming ``name``: wrong rank or length, a non-integer dtype, or (when
        concrete) a label outside ``[0, num_classes)``.
    """
    shape = tuple(np.shape(labels))
    dtype = _dtype_of(labels)
    expected = f"[N = {n}]" if n is not None else "[N]"
    if len(shape) != 1 or (n is not None and shape[0] != n):
        raise ValueError(f"{name} must be an int array {expected}, got shape {shape}")
    if not np.issubdtype(dtype, np.integer):
        raise ValueError(f"{name} must be an int array {expected}, got dtype {dtype}")
    value = concrete_value(labels)
    if value is None:
        return jnp.asarray(labels).astype(jnp.int32)
    if num_classes is not None and value.size and (value.min() < 0 or value.max() >= num_classes):
        outside = np.unique(value[(value < 0) | (value >= num_classes)])
        raise ValueError(
            f"{name} must lie in [0, {num_classes}) (the model's {num_classes} classes), got "
            f"{outside.size} value(s) outside: {outside[:10].tolist()}"
        )
    return value.astype(np.int32)


def check_classes(
    classes, *, batch: int, num_classes: int | None = None, name: str = "classes"
) -> Array:
    """``[B]`` int32 classes (a scalar is broadcast), in ``[0, num_classes)`` when concrete.

    Raises:
      ValueError: naming ``name``: not integer, wrong length or out of range.
    """
    dtype = _dtype_of(classes)
    if not np.issubdtype(dtype, np.integer):
        raise ValueError(f"{name} must be integer class indices, got dtype {dtype}")
    shape = tuple(np.shape(classes))
    if shape == ():
        classes = jnp.broadcast_to(jnp.asarray(classes), (batch,))
    elif shape != (batch,):
        raise ValueError(f"{name} must be an int or a [B = {batch}] int array, got shape {shape}")
    value = concrete_value(classes)
    if value is not None and num_classes is not None and value.size:
        if value.min() < 0 or value.max() >= num_classes:
            raise ValueError(
                f"{name} must lie in [0, {num_classes}) (K = {num_classes} classes), got values "
                f"in [{value.min()}, {value.max()}]"
            )
    return jnp.asarray(classes).astype(jnp.int32)


def as_class_vector(classes) -> Array:
    """``classes`` as a ``[B]`` int array; ``ValueError`` naming the argument otherwise."""
    classes = jnp.asarray(classes)
    if classes.ndim != 1 or not jnp.issubdtype(classes.dtype, jnp.integer):
        raise ValueError(f"classes must be a [B] int array, got {classes.dtype} {classes.shape}")
    return classes


# ----------------------------------------------------------------------------- flags


def rows_finite(x: Array, *, axis: int = 0) -> Array:
    """``[B]`` bool: whether every entry of each slice of ``x`` along ``axis`` is finite."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        return jnp.ones((x.shape[axis],), bool)
    other = tuple(i for i in range(x.ndim) if i != axis % x.ndim)
    return jnp.all(jnp.isfinite(x), axis=other)


def flag_rows(tree, valid: Array, *, axis: int = 0):
    """Sets the float leaves of ``tree`` to NaN in the rows where ``valid`` is ``False``.

    The flag of a check that could not raise because its input was traced: every float leaf
    with a leading (``axis``) dimension of ``len(valid)`` gets ``NaN`` in the invalid rows, so
    no downstream number looks plausible. Rows where ``valid`` is ``True`` are returned
    unchanged (bit for bit).

    Args:
      tree: a pytree of arrays.
      valid: ``[B]`` bool.
      axis: the batch axis of the leaves.

    Returns:
      A pytree like ``tree``.
    """
    valid = jnp.asarray(valid, bool)
    b = valid.shape[0]

    def flag(leaf):
        leaf = jnp.asarray(leaf)
        if not jnp.issubdtype(leaf.dtype, jnp.inexact) or leaf.ndim <= axis:
            return leaf
        if leaf.shape[axis] != b:
            return leaf
        shape = [1] * leaf.ndim
        shape[axis] = b
        return jnp.where(valid.reshape(shape), leaf, jnp.asarray(jnp.nan, leaf.dtype))

    return jax.tree.map(flag, tree)


# ----------------------------------------------------------------------------- files


def check_out_dir(name: str, path: str | os.PathLike) -> pathlib.Path:
    """An output directory that can be created: refuses ``''``, an existing file, and a path
    below an existing file or a non-writable directory. Nothing is created.

    Raises:
      ValueError: naming ``name`` and the problem.
    """
    if path is None or not str(os.fspath(path)).strip():
        raise ValueError(f"{name} must be a directory path, got {path!r} (empty)")
    p = pathlib.Path(os.fspath(path)).expanduser()
    if p.exists() and not p.is_dir():
        raise ValueError(f"{name} must be a directory, but {str(p)!r} is an existing file")
    parent = p if p.exists() else p.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"{name}: cannot create {str(p)!r}: {str(parent)!r} is a file")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{name}: cannot write to {str(parent)!r} (permission denied)")
    return p


def describe(value: Any) -> str:
    """A short description of ``value`` for error messages (shape and dtype of arrays)."""
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return f"{type(value).__name__} {value.dtype}{tuple(value.shape)}"
    return repr(value)

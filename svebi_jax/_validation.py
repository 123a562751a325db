"""Shared helpers for eager argument validation (the lowest room: imports nothing local)."""

import jax
import jax.numpy as jnp


def is_tracer(x) -> bool:
    """True when ``x`` is an abstract value inside a JAX transformation (skip value checks)."""
    return isinstance(x, jax.core.Tracer)


def as_class_vector(classes) -> jax.Array:
    """``classes`` as a ``[B]`` int array; ``ValueError`` naming the argument otherwise."""
    classes = jnp.asarray(classes)
    if classes.ndim != 1 or not jnp.issubdtype(classes.dtype, jnp.integer):
        raise ValueError(f"classes must be a [B] int array, got {classes.dtype} {classes.shape}")
    return classes

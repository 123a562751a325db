"""Shared helpers for eager argument validation (the lowest room: imports nothing local)."""

import jax


def is_tracer(x) -> bool:
    """True when ``x`` is an abstract value inside a JAX transformation (skip value checks)."""
    return isinstance(x, jax.core.Tracer)

"""Shared test fixtures."""

import contextlib
import pathlib

import pytest
from jax import monitoring

SHARED_MNIST = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


@pytest.fixture(scope="session")
def shared_mnist_dir():
    """The real MNIST test set laid out for this project (skips when absent)."""
    if not (SHARED_MNIST / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip("../shared/data/mnist is not present")
    return SHARED_MNIST


@contextlib.contextmanager
def count_compiles():
    """Counts XLA compilations (backend compiles) while the block runs."""
    events = []

    def listener(name, duration, **kwargs):
        if name == "/jax/core/compile/backend_compile_duration":
            events.append(name)

    monitoring.register_event_duration_secs_listener(listener)
    try:
        yield events
    finally:
        monitoring.unregister_event_duration_listener(listener)

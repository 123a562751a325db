"""Shallow SNN: time-batched == stepwise, jit == eager, geometry, input validation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from svebi_jax import layers as L
from svebi_jax.models import ShallowSNN, functional


@pytest.fixture(scope="module")
def images():
    return jax.random.uniform(jax.random.key(1), (6, 28, 28, 1), maxval=2.0)


@pytest.mark.parametrize("reset", L.lif.RESET_MODES)
def test_time_batched_equals_stepwise(images, reset):
    model = ShallowSNN(rngs=nnx.Rngs(0), config=L.SNNConfig(num_steps=10, reset=reset))
    a = model.forward(images, record="spikes")
    b = model.forward(images, record="spikes", mode="stepwise")
    assert set(a.spikes) == {"conv1", "conv2"}
    for name in a.spikes:
        assert a.spikes[name].shape == b.spikes[name].shape
        np.testing.assert_array_equal(a.spikes[name], b.spikes[name])
        assert 0.01 < float(a.spikes[name].mean()) < 0.99  # the test exercises real spiking
    np.testing.assert_allclose(a.logits, b.logits, rtol=1e-5, atol=1e-6)


def test_time_batched_equals_stepwise_gradients(images):
    model = ShallowSNN(rngs=nnx.Rngs(0))
    apply_fn, params = functional(model)

    def loss(p, mode):
        return jnp.sum(apply_fn(p, images, mode=mode).logits ** 2)

    ga = jax.grad(loss)(params, "time_batched")
    gb = jax.grad(loss)(params, "stepwise")
    for x, y in zip(jax.tree.leaves(ga), jax.tree.leaves(gb), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)


def test_time_varying_input_equals_direct(images):
    model = ShallowSNN(rngs=nnx.Rngs(0))
    direct = model.forward(images, record="mean")
    seq = model.forward(jnp.broadcast_to(images, (10,) + images.shape), record="mean")
    np.testing.assert_allclose(direct.logits, seq.logits, rtol=1e-6)
    np.testing.assert_array_equal(direct.spikes["conv2"], seq.spikes["conv2"])


def test_recorded_maps_shapes_and_mean(images):
    model = ShallowSNN(rngs=nnx.Rngs(0))
    out = model.forward(images, record="spikes")
    mean = model.forward(images, record="mean")
    assert out.spikes["conv1"].shape == (10, 6, 24, 24, 12)
    assert out.spikes["conv2"].shape == (10, 6, 8, 8, 64)
    np.testing.assert_allclose(mean.spikes["conv1"], out.spikes["conv1"].mean(0), rtol=1e-6)


def test_masks_zero_a_filter(images):
    model = ShallowSNN(rngs=nnx.Rngs(0))
    mask = jnp.ones(64).at[jnp.array([0, 5])].set(0.0)
    out = model.forward(images, record="mean", masks={"conv2": mask})
    assert float(jnp.abs(out.spikes["conv2"][..., jnp.array([0, 5])]).max()) == 0.0
    full = model.forward(images)
    assert not np.allclose(out.logits, full.logits)
    with pytest.raises(ValueError, match="masks"):
        model.forward(images, masks={"conv9": mask})


def test_jit_equals_eager_and_no_recompile(images):
    model = ShallowSNN(rngs=nnx.Rngs(0))
    apply_fn, params = functional(model)
    traces = []

    def fwd(p, x):
        traces.append(1)
        return apply_fn(p, x, record="mean")

    jitted = jax.jit(fwd)
    a = jitted(params, images)
    b = jitted(params, images + 0.0)
    eager = apply_fn(params, images, record="mean")
    assert len(traces) == 1
    np.testing.assert_allclose(a.logits, eager.logits, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(a.spikes["conv1"], eager.spikes["conv1"])
    np.testing.assert_array_equal(a.logits, b.logits)


def test_geometry_of_shallow_snn():
    model = ShallowSNN(rngs=nnx.Rngs(0))
    geo = model.geometry
    assert geo["conv1"] == L.Geometry(24, 24, 12, 5, 1, 2.0)
    # conv2 sees pool(2) of conv1: rf = 5 + 1*1 + 4*2 = 14, jump 2, centre of cell 0 = 6.5
    assert geo["conv2"] == L.Geometry(8, 8, 64, 14, 2, 6.5)
    assert model.conv_layer_names == ("conv1", "conv2")


def test_padded_strided_geometry():
    layers = (L.Conv("a", 4, 3, stride=2, padding=1), L.LIF(), L.Flatten(), L.Dense("o", 2))
    geo = L.layer_geometry(layers, (9, 9, 1))
    # out = (9 + 2 - 3)//2 + 1 = 5; centre of cell 0 = 0 + (1 - 1)*1 = 0
    assert geo["a"] == L.Geometry(5, 5, 4, 3, 2, 0.0)


@pytest.mark.parametrize(
    "bad,match",
    [
        (np.ones((28, 28, 1), np.float32), "images"),
        (np.ones((2, 32, 32, 1), np.float32), "images"),
        (np.ones((2, 28, 28, 3), np.float32), "images"),
        (np.full((2, 28, 28, 1), np.nan, np.float32), "NaN"),
        (np.ones((4, 2, 28, 28, 1), np.float32), "T = 10"),
    ],
)
def test_bad_images(bad, match):
    model = ShallowSNN(rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=match):
        model(bad)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"num_steps": 0}, "num_steps"),
        ({"beta": 1.2}, "beta"),
        ({"threshold": 0.0}, "threshold"),
        ({"reset": "x"}, "reset"),
        ({"surrogate": "x"}, "surrogate"),
    ],
)
def test_bad_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        L.SNNConfig(**kwargs)


def test_bad_layer_specs():
    with pytest.raises(ValueError, match="Dense readout"):
        L.validate_layers((L.Conv("a", 2, 3), L.LIF()))
    with pytest.raises(ValueError, match="unique"):
        L.validate_layers((L.Dense("a", 2), L.LIF(), L.Dense("a", 2)))
    with pytest.raises(ValueError, match="does not fit"):
        L.layer_geometry((L.Conv("a", 2, 7),), (5, 5, 1))


@pytest.mark.parametrize("size", [8, 9])
def test_fast_pool_equals_reduce_window(size):
    x = jax.random.uniform(jax.random.key(0), (3, size, size, 2))
    ref_max = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
    ref_sum = jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
    np.testing.assert_array_equal(L._pool(x, L.MaxPool(2)), ref_max)
    np.testing.assert_allclose(L._pool(x, L.AvgPool(2)), ref_sum / 4, rtol=1e-6)
    # overlapping windows take the reduce_window path
    ref3 = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1, 2, 2, 1), "VALID")
    np.testing.assert_array_equal(L._pool(x, L.MaxPool(3, stride=2)), ref3)

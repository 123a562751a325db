"""Tests of svebi_jax.checkpoint."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx, serialization

from svebi_jax import checkpoint as C
from svebi_jax import layers as L
from svebi_jax.models import ShallowSNN, SpikingNetwork, functional

SNN = L.SNNConfig(num_steps=3, beta=0.9, reset="zero")


def _model(seed=0, **kw):
    return ShallowSNN(rngs=nnx.Rngs(seed), config=SNN, channels=(4, 8), hidden=16, **kw)


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def test_round_trip_is_bit_exact_and_template_untouched(tmp_path):
    _, params = functional(_model(seed=1))
    # Make the values awkward for any lossy format.
    params = jax.tree.map(lambda x: x * jnp.float32(np.pi) + jnp.float32(1e-30), params)
    C.save_checkpoint(tmp_path, params, config={"note": "x"})
    _, template = functional(_model(seed=2))
    before = _leaves(template)
    restored = C.load_checkpoint(tmp_path, template)
    assert isinstance(restored, nnx.State)
    assert jax.tree.structure(restored) == jax.tree.structure(params)
    for a, b in zip(_leaves(restored), _leaves(params), strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a.view(np.uint32), b.view(np.uint32))
    for a, b in zip(_leaves(template), before, strict=True):
        np.testing.assert_array_equal(a, b)


def test_params_file_is_msgpack_of_pure_dict(tmp_path):
    _, params = functional(_model())
    C.save_checkpoint(tmp_path, params, config={})
    raw = (tmp_path / "params.msgpack").read_bytes()
    assert raw[:1] != b"\x80"  # not a pickle stream
    pure = serialization.msgpack_restore(raw)
    assert set(pure) == {"conv1", "conv2", "fc1", "fc2"}
    assert pure["conv2"]["kernel"].shape == (5, 5, 4, 8)
    np.testing.assert_array_equal(pure["fc1"]["kernel"], np.asarray(params["fc1"]["kernel"][...]))


def test_dict_template_and_shape_dtype_struct_template(tmp_path):
    _, params = functional(_model())
    C.save_checkpoint(tmp_path, params, config={})
    pure = nnx.to_pure_dict(params)
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), pure)
    restored = C.load_checkpoint(tmp_path, abstract)
    assert isinstance(restored, dict)
    for a, b in zip(_leaves(restored), _leaves(pure), strict=True):
        np.testing.assert_array_equal(a, b)


def test_wrong_shape_raises_naming_path_and_shapes(tmp_path):
    model = _model()
    C.save_checkpoint(tmp_path, model, config={})
    # A template whose fc1 is 32 wide instead of 16 (abstract, so nothing is initialized).
    wide = nnx.eval_shape(
        lambda: ShallowSNN(rngs=nnx.Rngs(0), config=SNN, channels=(4, 8), hidden=32)
    )
    with pytest.raises(ValueError) as exc:
        C.load_checkpoint(tmp_path, nnx.state(wide, nnx.Param))
    msg = str(exc.value)
    assert "fc1/bias" in msg and "(16,)" in msg and "(32,)" in msg


def test_missing_and_extra_keys_raise(tmp_path):
    pure = nnx.to_pure_dict(functional(_model())[1])
    C.save_checkpoint(tmp_path, pure, config={})
    fewer = {k: v for k, v in pure.items() if k != "fc2"}
    with pytest.raises(ValueError, match="fc2/"):
        C.load_checkpoint(tmp_path, fewer)  # checkpoint has fc2, template lacks it
    more = dict(pure, fc3={"kernel": np.zeros((2, 2), np.float32)})
    with pytest.raises(ValueError, match="fc3/kernel"):
        C.load_checkpoint(tmp_path, more)


def test_wrong_dtype_raises(tmp_path):
    pure = nnx.to_pure_dict(functional(_model())[1])
    C.save_checkpoint(tmp_path, pure, config={})
    half = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, jnp.float16), pure)
    with pytest.raises(ValueError, match="dtype"):
        C.load_checkpoint(tmp_path, half)


def test_config_and_metrics_json(tmp_path):
    _, params = functional(_model())
    cfg = {"model": "shallow", "nested": {"a": [1, 2]}}
    C.save_checkpoint(tmp_path, params, config=cfg, metrics={"test_accuracy": 0.5})
    assert C.load_config(tmp_path) == cfg
    assert json.loads((tmp_path / "config.json").read_text()) == cfg
    assert C.load_metrics(tmp_path) == {"test_accuracy": 0.5}
    with pytest.raises(TypeError, match="config"):
        C.save_checkpoint(tmp_path, params, config={"bad": object()})


def test_missing_checkpoint_raises(tmp_path):
    _, params = functional(_model())
    with pytest.raises(FileNotFoundError, match="params.msgpack"):
        C.load_checkpoint(tmp_path / "nope", params)


def test_restore_shallow_model_reproduces_outputs(tmp_path):
    model = _model(seed=4)
    cfg = C.model_config(model)
    assert cfg["model"] == "shallow"
    assert cfg["channels"] == [4, 8] and cfg["hidden"] == 16 and cfg["num_classes"] == 10
    assert cfg["snn"]["reset"] == "zero"
    C.save_checkpoint(tmp_path, nnx.state(model, nnx.Param), config=cfg)
    restored = C.restore_model(tmp_path)
    assert restored.config == model.config
    assert restored.layers == model.layers
    x = np.random.default_rng(0).random((3, 28, 28, 1)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(restored(x)), np.asarray(model(x)))


def test_restore_generic_spiking_network(tmp_path):
    layers = (
        L.Conv("c", 3, 3, stride=2, padding=1),
        L.LIF(),
        L.AvgPool(2),
        L.Flatten(),
        L.Dense("out", 5),
    )
    model = SpikingNetwork(layers, input_shape=(8, 8, 2), config=SNN, rngs=nnx.Rngs(0))
    cfg = C.model_config(model)
    assert cfg["model"] == "spiking_network"
    C.save_checkpoint(tmp_path, model, config=cfg)
    restored = C.restore_model(tmp_path)
    assert restored.layers == layers and restored.input_shape == (8, 8, 2)
    x = np.random.default_rng(1).random((2, 8, 8, 2)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(restored(x)), np.asarray(model(x)))


def test_restore_model_rejects_unknown_model(tmp_path):
    _, params = functional(_model())
    C.save_checkpoint(tmp_path, params, config={"model": "resnet", "input_shape": [28, 28, 1]})
    with pytest.raises(ValueError, match="model"):
        C.restore_model(tmp_path)

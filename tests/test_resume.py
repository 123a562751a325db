"""Resumable runs: interrupted training and response extraction end bit for bit as uninterrupted
ones; stores written by another run, or for another class count, are refused."""

import json

import jax
import numpy as np
import pytest
from flax import nnx

from svebi_jax import checkpoint, train
from svebi_jax import data as D
from svebi_jax import layers as L
from svebi_jax.models import ShallowSNN, functional
from svebi_jax.responses import compute_responses
from svebi_jax.resume import ShardStore, params_fingerprint

SNN = L.SNNConfig(num_steps=3)


class Interrupt(Exception):
    """Stands for a killed job."""


def net(num_classes=3, seed=2):
    return ShallowSNN(
        input_shape=(16, 16, 1),
        num_classes=num_classes,
        channels=(4, 6),
        hidden=16,
        config=SNN,
        rngs=nnx.Rngs(seed),
    )


@pytest.fixture(scope="module")
def toy():
    rng = np.random.default_rng(0)
    gamma = rng.uniform(0.3, 4.0, (40, 1, 1, 1)).astype(np.float32)
    images = rng.random((40, 16, 16, 1), dtype=np.float32) ** gamma
    labels = rng.integers(0, 3, 40).astype(np.int32)
    return D.Dataset(images, labels, 3, "toy")


def leaves_equal(a, b):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(la) == len(lb) and all(
        np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb, strict=True)
    )


CFG = train.TrainConfig(epochs=2, batch_size=8, snn=SNN)  # 5 steps per epoch, 10 in all


def test_fit_resumes_bit_for_bit(toy, tmp_path):
    ref, ref_hist = train.fit(net(), toy, config=CFG, progress=False)
    saved = []

    def stop_at_6(step):  # every 3 steps (6 is mid-epoch 2) and at the end: 3, 6, 9, 10
        saved.append(step)
        if step == 6:
            raise Interrupt

    def fit(on_checkpoint):
        kw = dict(config=CFG, progress=False, checkpoint_dir=tmp_path / "ck", checkpoint_every=3)
        return train.fit(net(), toy, on_checkpoint=on_checkpoint, **kw)

    with pytest.raises(Interrupt):
        fit(stop_at_6)
    assert saved == [3, 6]
    got, hist = fit(saved.append)
    assert saved == [3, 6, 9, 10]
    assert leaves_equal(got, ref), "resumed parameters differ from an uninterrupted run"
    assert hist["train_loss"] == ref_hist["train_loss"]
    assert hist["train_accuracy"] == ref_hist["train_accuracy"]
    # A finished run is restored, not trained again.
    again, _ = fit(saved.append)
    assert saved == [3, 6, 9, 10] and leaves_equal(again, ref)


def test_fit_resume_refuses_other_class_count_and_config(toy, tmp_path):
    cfg = CFG.replace(epochs=1)
    train.fit(net(), toy, config=cfg, progress=False, checkpoint_dir=tmp_path / "ck")
    with pytest.raises(
        ValueError, match="written for a model with 3 classes, but this model has 5"
    ):
        train.fit(
            net(num_classes=5), toy, config=cfg, progress=False, checkpoint_dir=tmp_path / "ck"
        )
    with pytest.raises(
        ValueError, match=r"another training config \(differs in \['learning_rate'\]"
    ):
        train.fit(
            net(),
            toy,
            config=cfg.replace(learning_rate=1e-3),
            progress=False,
            checkpoint_dir=tmp_path / "ck",
        )


def test_load_checkpoint_refuses_other_class_count(tmp_path):
    model = net(num_classes=3)
    checkpoint.save_checkpoint(
        tmp_path / "m", nnx.state(model, nnx.Param), config=checkpoint.model_config(model)
    )
    other = nnx.state(net(num_classes=5), nnx.Param)
    with pytest.raises(ValueError, match="saved for a model with 3 classes .* has 5"):
        checkpoint.load_checkpoint(tmp_path / "m", other)


def test_responses_resume_bit_for_bit(toy, tmp_path):
    apply_fn, params = functional(net())
    ref = compute_responses(apply_fn, params, toy, batch_size=4)
    written = []

    def stop_after_3(k):
        written.append(k)
        if k == 2:
            raise Interrupt

    kw = dict(batch_size=4, checkpoint_dir=tmp_path / "X", shard_batches=2)
    with pytest.raises(Interrupt):
        compute_responses(apply_fn, params, toy, on_shard=stop_after_3, **kw)
    assert written == [0, 1, 2] and ShardStore(tmp_path / "X", _fp(tmp_path)).completed() == 3
    got = compute_responses(apply_fn, params, toy, on_shard=written.append, **kw)
    assert written == [0, 1, 2, 3, 4]  # 40 images = 10 batches = 5 shards; 3, 4 computed now
    for name in ("X", "L", "predictions", "labels"):
        np.testing.assert_array_equal(getattr(got, name), getattr(ref, name))
    assert got.X.dtype == ref.X.dtype and got.index == ref.index
    # A third run computes nothing and still returns the same X.
    again = compute_responses(apply_fn, params, toy, on_shard=written.append, **kw)
    assert written == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(again.X, ref.X)


def _fp(tmp_path):
    return json.loads((tmp_path / "X" / "meta.json").read_text())["fingerprint"]


def test_responses_refuse_shards_of_another_run(toy, tmp_path):
    apply_fn, params = functional(net())
    kw = dict(batch_size=4, checkpoint_dir=tmp_path / "X", shard_batches=2)
    compute_responses(apply_fn, params, toy, **kw)
    other = jax.tree.map(lambda p: p * 2.0, params)
    with pytest.raises(ValueError, match=r"shards of another run \(differs in \['params_sha256'\]"):
        compute_responses(apply_fn, other, toy, **kw)
    with pytest.raises(ValueError, match=r"differs in \['normalization'\]"):
        compute_responses(apply_fn, params, toy, normalization="max", **kw)


def test_shard_store_atomic_files_and_fingerprint(tmp_path):
    store = ShardStore(tmp_path / "s", {"a": 1})
    assert store.completed() == 0
    store.write(0, {"X": np.arange(3.0)})
    store.write(2, {"X": np.arange(2.0)})  # a gap: only shard 0 counts as finished
    assert store.completed() == 1
    np.testing.assert_array_equal(store.read(0)["X"], [0.0, 1.0, 2.0])
    assert not list((tmp_path / "s").glob("*.tmp"))
    store.path(1).write_bytes(b"not an npz")
    with pytest.raises(ValueError, match="shard-00001.npz' is unreadable"):
        store.read(1)
    fp = params_fingerprint({"w": np.ones(2, np.float32)})
    assert fp == params_fingerprint({"w": np.ones(2, np.float32)})
    assert fp != params_fingerprint({"w": np.ones(2, np.float64)})


def test_fit_on_a_stream_resumes_bit_for_bit(toy, tmp_path):
    """A streaming source: the resumed epoch starts at the saved step (``start=``)."""
    from svebi_jax.data.stream import ArraySource

    source = ArraySource(toy)
    cfg = CFG.replace(epochs=1)
    ref, _ = train.fit(net(), source, config=cfg, progress=False)

    def stop_at_2(step):
        if step == 2:
            raise Interrupt

    kw = dict(config=cfg, progress=False, checkpoint_dir=tmp_path / "ck", checkpoint_every=2)
    with pytest.raises(Interrupt):
        train.fit(net(), source, on_checkpoint=stop_at_2, **kw)
    got, hist = train.fit(net(), source, **kw)
    assert leaves_equal(got, ref)
    assert len(hist["train_loss"]) == 1
    with pytest.raises(ValueError, match="train_ds has 3 classes but the model has 5"):
        train.fit(net(num_classes=5), source, config=cfg, progress=False)


def test_masked_loss_ignores_masked_rows():
    apply_fn, params = functional(net())
    rng = np.random.default_rng(3)
    x = rng.random((4, 16, 16, 1), dtype=np.float32)
    y = np.array([0, 1, 2, 1], np.int32)
    full, _ = train.loss_fn(params, apply_fn, x[:2], y[:2])
    mask = np.array([1, 1, 0, 0], bool)
    masked, _ = train.loss_fn(params, apply_fn, x, y, mask)
    np.testing.assert_allclose(float(masked), float(full), rtol=1e-6)
    # garbage in the masked rows (an unreadable file's zeros, padding) changes nothing
    x2 = x.copy()
    x2[2], x2[3] = 7.0, -3.0
    again, _ = train.loss_fn(params, apply_fn, x2, y, mask)
    assert float(again) == float(masked)

# ruff: noqa: E402  (XLA_FLAGS must be set before the imports below)
"""Data-parallel stages on 4 simulated CPU devices equal their one-device results.

Collected only when named explicitly (``tests/test_sharding.py`` runs it in a subprocess
with ``XLA_FLAGS=--xla_force_host_platform_device_count=4`` and XLA's CPU collective
timeouts raised, so that a loaded machine that starves a device thread for more than XLA's
default 40 s slows the run down instead of aborting it). Each case runs a stage with
``mesh=None`` (one device) and with a 4-device mesh on the same inputs and compares:

* exact (``array_equal``): responses ``X``, predictions, ``L``, the μ-lasso ``W`` of that
  ``X``, ablation curves (integer counts), insertion/deletion predicted classes;
* float tolerance: one training step (the gradient's batch sum is all-reduced in another
  order), Grad2D / IG2D maps and insertion/deletion curves (each device runs the same program
  on fewer rows, so XLA may block its reductions differently).
"""

import os

# The 4 simulated devices must be asked for before JAX creates its CPU backend (importing jax
# does not create it). The default suite sets this in the subprocess's environment; this line
# makes `python -m pytest -q tests/multidevice/sharded_cases.py` work on its own too.
N_DEV = 4
#: XLA flags of these cases: the devices, and collective timeouts of 10 minutes.
FLAGS = (
    "--xla_force_host_platform_device_count=4",  # N_DEV
    "--xla_cpu_collective_timeout_seconds=600",
    "--xla_cpu_collective_call_terminate_timeout_seconds=600",
)
for _flag in FLAGS:
    if _flag.split("=")[0] not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _flag).strip()

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from svebi_jax import layers as L
from svebi_jax import sharding as S
from svebi_jax import train
from svebi_jax.lasso import mu_lasso
from svebi_jax.methods import grad2d_maps, integrated_gradients_result
from svebi_jax.metrics.ablation import ablation_curve
from svebi_jax.metrics.insdel import insertion_deletion
from svebi_jax.models import ShallowSNN, functional
from svebi_jax.responses import compute_responses


@pytest.fixture(scope="module")
def mesh():
    assert jax.device_count() == N_DEV, (
        f"run with XLA_FLAGS=--xla_force_host_platform_device_count={N_DEV}"
    )
    return S.make_mesh()


@pytest.fixture(scope="module")
def model():
    """A small shallow SNN (T = 4) on 16x16 images, 3 classes, and 20 of its inputs."""
    net = ShallowSNN(
        input_shape=(16, 16, 1),
        num_classes=3,
        channels=(4, 6),
        hidden=16,
        config=L.SNNConfig(num_steps=4),
        rngs=nnx.Rngs(2),  # a seed whose untrained net predicts all 3 classes on these images
    )
    apply_fn, params = functional(net)
    rng = np.random.default_rng(0)
    gamma = rng.uniform(0.3, 4.0, (20, 1, 1, 1)).astype(np.float32)  # varied brightness
    images = rng.random((20, 16, 16, 1), dtype=np.float32) ** gamma
    labels = rng.integers(0, 3, 20).astype(np.int32)
    return apply_fn, params, images, labels


def test_mesh_spans_all_devices(mesh):
    assert mesh.shape == {"data": N_DEV}
    x = S.shard_batch(mesh, np.arange(16.0).reshape(16, 1))
    assert len(x.addressable_shards) == N_DEV
    assert x.addressable_shards[3].data.tolist() == [[12.0], [13.0], [14.0], [15.0]]  # 4d..
    padded, mask = S.pad_batch(np.arange(5), 8)
    assert padded.tolist() == [0, 1, 2, 3, 4, 4, 4, 4] and mask.sum() == 5


def test_train_step_equals_one_device(mesh, model):
    apply_fn, params, images, labels = model
    opt = train.make_optimizer(train.TrainConfig(schedule="constant", learning_rate=1e-2), 1)
    x, y = images[:16], labels[:16]

    def run(m):
        p = jax.tree.map(jnp.array, params)
        state = opt.init(p)
        step = train.make_train_step(apply_fn, opt, mesh=m)
        if m is not None:
            p, state = S.replicate(m, (p, state))
            x_, y_ = S.shard_batch(m, (x, y))
        else:
            x_, y_ = x, y
        for _ in range(2):
            p, state, loss, acc = step(p, state, x_, y_)
        return p, float(loss), float(acc)

    p1, l1, a1 = run(None)
    p8, l8, a8 = run(mesh)
    assert a1 == a8
    np.testing.assert_allclose(l8, l1, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p8), strict=True):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-6)


def test_fit_equals_one_device(mesh, model):
    apply_fn, params, images, labels = model
    from svebi_jax import data as D

    ds = D.Dataset(images, labels, 3, "toy")
    cfg = train.TrainConfig(epochs=1, batch_size=8, snn=L.SNNConfig(num_steps=4))
    p1, h1 = train.fit((apply_fn, params), ds, config=cfg, progress=False)
    p8, h8 = train.fit((apply_fn, params), ds, config=cfg, progress=False, mesh=mesh)
    np.testing.assert_allclose(h8["train_loss"], h1["train_loss"], rtol=1e-5)
    for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p8), strict=True):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-4, atol=1e-6)


def test_responses_and_lasso_identical(mesh, model):
    apply_fn, params, images, _ = model
    r1 = compute_responses(apply_fn, params, images, batch_size=12)
    r8 = compute_responses(apply_fn, params, images, batch_size=12, mesh=mesh)
    assert r1.X.shape == (20, 10) and r1.X.sum() > 0
    assert len(set(r1.predictions.tolist())) == 3
    np.testing.assert_array_equal(r8.X, r1.X)
    np.testing.assert_array_equal(r8.predictions, r1.predictions)
    np.testing.assert_array_equal(r8.L, r1.L)
    w1 = mu_lasso(r1.X, r1.L, 2.0).W
    w8 = mu_lasso(r8.X, r8.L, 2.0).W
    np.testing.assert_array_equal(np.asarray(w8), np.asarray(w1))


def test_grad2d_and_ig2d_maps(mesh, model):
    apply_fn, params, images, _ = model
    x = images[:10]  # 10 rows: padded to 12 over 4 devices
    g1 = grad2d_maps(apply_fn, params, x)
    g8 = grad2d_maps(apply_fn, params, x, mesh=mesh)
    assert g8.shape == (10, 16, 16) and float(jnp.abs(g1).max()) > 0
    np.testing.assert_allclose(np.asarray(g8), np.asarray(g1), rtol=1e-5, atol=1e-6)
    i1 = integrated_gradients_result(apply_fn, params, x, path_steps=4, chunk_size=2)
    i8 = integrated_gradients_result(apply_fn, params, x, path_steps=4, chunk_size=2, mesh=mesh)
    np.testing.assert_allclose(
        np.asarray(i8.attributions), np.asarray(i1.attributions), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_array_equal(np.asarray(i8.classes), np.asarray(i1.classes))
    np.testing.assert_allclose(
        np.asarray(i8.completeness_gap), np.asarray(i1.completeness_gap), rtol=1e-5, atol=1e-6
    )


def test_insertion_deletion(mesh, model):
    apply_fn, params, images, _ = model
    x = images[:10]

    def attr_fn(p, imgs, target=None):  # a fixed, tie-free map: the games alone are compared
        return jnp.asarray(imgs[..., 0]) + jnp.linspace(0, 1e-3, 256).reshape(16, 16)

    kw = dict(pixels_per_step=32, substrate="zeros", chunk_size=16)
    r1 = insertion_deletion(attr_fn, apply_fn, params, x, **kw)
    r8 = insertion_deletion(attr_fn, apply_fn, params, x, mesh=mesh, **kw)
    for g1, g8 in ((r1.insertion, r8.insertion), (r1.deletion, r8.deletion)):
        assert g8.curves.shape == (10, 9)
        np.testing.assert_array_equal(np.asarray(g8.classes), np.asarray(g1.classes))
        np.testing.assert_allclose(np.asarray(g8.curves), np.asarray(g1.curves), atol=1e-6)
        np.testing.assert_allclose(np.asarray(g8.auc), np.asarray(g1.auc), atol=1e-6)
        np.testing.assert_allclose(float(g8.mean_auc), float(g1.mean_auc), atol=1e-6)
    assert r8.insertion.higher_is_better and not r8.deletion.higher_is_better


def test_ablation_curve_identical(mesh, model):
    apply_fn, params, images, labels = model
    rng = np.random.default_rng(1)
    masks = {
        "conv1": (rng.random((2, 3, 4)) < 0.5).astype(np.float32),
        "conv2": (rng.random((2, 3, 6)) < 0.5).astype(np.float32),
    }
    kw = dict(mu=np.array([1.0, 2.0]), key=jax.random.key(0), n_random=2, batch_size=12)
    a1 = ablation_curve(apply_fn, params, images, labels, masks, **kw)
    a8 = ablation_curve(apply_fn, params, images, labels, masks, mesh=mesh, **kw)
    assert a8.full == a1.full
    for f in ("relevant", "random", "random_std", "num_ablated"):
        np.testing.assert_array_equal(getattr(a8, f), getattr(a1, f))

"""Temporal Spike Attribution: the paper's matrix products (NumPy) on tiny SNNs."""

import jax.numpy as jnp
import numpy as np
import pytest

from svebi_jax import attribution
from svebi_jax import layers as L
from svebi_jax.interop.nir import make_apply_fn
from svebi_jax.methods import tsa as TS

T, BETA, THETA = 4, 0.8, 0.4


def _wc(w):
    """Weight contributions: sign(W) (|W| - min|W|) / (max|W| - min|W|) over the layer."""
    a = np.abs(w)
    return np.sign(w) * (a - a.min()) / (a.max() - a.min())


def _np_lif(cur):
    u_prev, s_prev = np.zeros(cur.shape[1:]), np.zeros(cur.shape[1:])
    out = []
    for t in range(cur.shape[0]):
        u_prev = BETA * u_prev + cur[t] - THETA * s_prev
        s_prev = (u_prev > THETA).astype(float)
        out.append(s_prev)
    return np.stack(out)


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _tscs(s, t, variant, n):
    score = np.where(s > 0, 1.0, 0.0 if variant == "s" else -1.0 / n)
    return BETA ** (T - t) * score


def _params(rng, shapes):
    return {
        n: {
            "kernel": rng.normal(0.2, 0.7, s).astype(np.float32),
            "bias": rng.normal(0, 0.1, s[-1]).astype(np.float32),
        }
        for n, s in shapes.items()
    }


@pytest.mark.parametrize("variant", ["s", "ns"])
def test_dense_network_as_in_the_paper(variant):
    # A conv whose kernel covers the whole 2x2 image is a dense layer: TSA's own case.
    layers = (L.Conv("conv1", 3, 2), L.LIF(), L.Flatten(), L.Dense("out", 2))
    cfg = L.SNNConfig(num_steps=T, beta=BETA, threshold=THETA)
    rng = np.random.default_rng(1)
    params = _params(rng, {"conv1": (2, 2, 1, 3), "out": (3, 2)})
    x = (rng.uniform(0, 1, (3, 2, 2, 1)) > 0.4).astype(np.float32)  # binary input spikes
    w0 = params["conv1"]["kernel"].reshape(4, 3)
    w1 = params["out"]["kernel"]
    xf = x.reshape(3, 4)
    spikes = _np_lif(np.broadcast_to(xf @ w0 + params["conv1"]["bias"], (T, 3, 3)))
    logits = spikes.sum(0) @ w1 / T + params["out"]["bias"]
    probs = _softmax(logits)
    target = np.array([1, 0, 1])
    expected = np.zeros((T, 3, 4))
    for b in range(3):
        for t in range(T):  # the reference code's loop: diag(TSCS) @ Wc per layer, diag(p)
            d0 = np.diag(_tscs(xf[b], t, variant, 4))
            d1 = np.diag(_tscs(spikes[t, b], t, variant, 3))
            a = d0 @ _wc(w0) @ d1 @ _wc(w1) @ np.diag(probs[b])
            expected[t, b] = a[:, target[b]]
    assert np.abs(expected).max() > 1e-3
    apply_fn = make_apply_fn(layers, cfg, (2, 2, 1))
    np.testing.assert_allclose(apply_fn(params, x).logits, logits, rtol=1e-5, atol=1e-6)
    net = (layers, cfg)
    steps = TS.tsa_steps(apply_fn, params, x, target, network=net, variant=variant)
    np.testing.assert_allclose(steps, expected.reshape(T, 3, 2, 2), rtol=1e-5, atol=1e-7)


def test_convolutional_network_with_max_pooling():
    layers = (
        L.Conv("conv1", 2, 3),
        L.LIF(),
        L.MaxPool(2),
        L.Flatten(),
        L.Dense("out", 3),
    )
    cfg = L.SNNConfig(num_steps=T, beta=BETA, threshold=THETA)
    rng = np.random.default_rng(2)
    params = _params(rng, {"conv1": (3, 3, 1, 2), "out": (2, 3)})
    x = rng.uniform(0, 1, (2, 4, 4, 1)).astype(np.float32)
    k, kb = params["conv1"]["kernel"], params["conv1"]["bias"]
    cur = np.zeros((2, 2, 2, 2))
    for i in range(2):
        for j in range(2):
            cur[:, i, j] = np.einsum("buvc,uvco->bo", x[:, i : i + 3, j : j + 3], k) + kb
    spikes = _np_lif(np.broadcast_to(cur, (T,) + cur.shape))  # [T, B, 2, 2, 2]
    pooled = spikes.max(axis=(2, 3))  # [T, B, 2]
    logits = pooled.sum(0) @ params["out"]["kernel"] / T + params["out"]["bias"]
    probs = _softmax(logits)
    kc, wc = _wc(k), _wc(params["out"]["kernel"])
    expected = np.zeros((T, 2, 4, 4))
    for b in range(2):
        c = int(np.argmax(logits[b]))
        for t in range(T):
            r_pool = wc[:, c] * probs[b, c]  # [2] relevance of the pooled neurons
            r_conv = np.zeros((2, 2, 2))
            for ch in range(2):  # max pooling: the spiking neurons of the window share
                window = spikes[t, b, :, :, ch]
                share = window / window.sum() if window.sum() > 0 else np.full((2, 2), 0.25)
                r_conv[:, :, ch] = share * r_pool[ch]
            r_conv *= BETA ** (T - t) * spikes[t, b]  # TSA-S scores of the conv neurons
            for i in range(2):
                for j in range(2):
                    back = np.einsum("uvco,o->uvc", kc, r_conv[i, j])[..., 0]
                    expected[t, b, i : i + 3, j : j + 3] += back
            expected[t, b] *= BETA ** (T - t) * x[b, :, :, 0]  # the input's scores
    assert np.abs(expected).max() > 1e-3
    apply_fn = make_apply_fn(layers, cfg, (4, 4, 1))
    attr_fn = attribution.tsa(apply_fn, network=(layers, cfg), time_resolved=True)
    np.testing.assert_allclose(attr_fn(params, x), expected, rtol=1e-5, atol=1e-7)


def test_weight_contributions_and_errors():
    w = jnp.array([[-2.0, 1.0], [0.5, 0.0]])
    np.testing.assert_allclose(TS.weight_contributions(w), [[-1.0, 0.5], [0.25, 0.0]])
    layers = (L.Conv("conv1", 3, 2), L.LIF(), L.Flatten(), L.Dense("out", 2))
    net = (layers, L.SNNConfig(num_steps=T))
    apply_fn = make_apply_fn(*net, (2, 2, 1))
    with pytest.raises(ValueError, match="variant"):
        attribution.tsa(apply_fn, network=net, variant="x")
    with pytest.raises(ValueError, match="beta"):
        attribution.tsa(apply_fn, network=net, beta=1.5)


_MESH_SCRIPT = """
import jax, jax.numpy as jnp, numpy as np
from svebi_jax import attribution, sharding
from svebi_jax import layers as L
from svebi_jax.interop.nir import make_apply_fn

layers = (L.Conv("conv1", 2, 3), L.LIF(), L.MaxPool(2), L.Flatten(), L.Dense("out", 3))
net = (layers, L.SNNConfig(num_steps=3, beta=0.8, threshold=0.4))
rng = np.random.default_rng(0)
params = {"conv1": {"kernel": jnp.asarray(rng.normal(0.2, 0.7, (3, 3, 1, 2)), jnp.float32),
                    "bias": jnp.zeros(2)},
          "out": {"kernel": jnp.asarray(rng.normal(0, 1, (2, 3)), jnp.float32),
                  "bias": jnp.zeros(3)}}
x = jnp.asarray(rng.uniform(0, 1, (DEVICES + 2, 4, 4, 1)), jnp.float32)
apply_fn = make_apply_fn(*net, (4, 4, 1))
mesh = sharding.make_mesh()
assert len(mesh.devices.ravel()) == DEVICES
for make in (lambda **k: attribution.gradcam(apply_fn, layer="conv1", network=net, **k),
             lambda **k: attribution.lrp(apply_fn, network=net, time_resolved=True, **k),
             lambda **k: attribution.tsa(apply_fn, network=net, **k)):
    one, many = make()(params, x), make(mesh=mesh)(params, x)
    np.testing.assert_allclose(np.asarray(many), np.asarray(one), rtol=1e-5, atol=1e-7)
print("MESH-OK")
"""


def _run_mesh_script(devices):
    import os
    import subprocess
    import sys

    env = dict(os.environ)
    flags = f"--xla_force_host_platform_device_count={devices}"
    env["XLA_FLAGS"] = " ".join([env.get("XLA_FLAGS", ""), flags]).strip()
    env["JAX_PLATFORMS"] = "cpu"
    script = _MESH_SCRIPT.replace("DEVICES", str(devices))
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=900
    )
    assert "MESH-OK" in proc.stdout, proc.stderr[-3000:]


def test_mesh_matches_no_mesh_in_process():
    from svebi_jax import sharding

    layers = (L.Conv("conv1", 2, 3), L.LIF(), L.Flatten(), L.Dense("out", 3))
    net = (layers, L.SNNConfig(num_steps=2, beta=BETA, threshold=THETA))
    params = _params(np.random.default_rng(4), {"conv1": (3, 3, 1, 2), "out": (8, 3)})
    x = np.random.default_rng(5).uniform(0, 1, (3, 4, 4, 1)).astype(np.float32)
    apply_fn = make_apply_fn(*net, (4, 4, 1))
    mesh = sharding.make_mesh()
    one = attribution.tsa(apply_fn, network=net, variant="ns")(params, x)
    many = attribution.tsa(apply_fn, network=net, variant="ns", mesh=mesh)(params, x)
    np.testing.assert_allclose(np.asarray(many), np.asarray(one), rtol=1e-6, atol=1e-8)


@pytest.mark.slow
def test_mesh_four_devices_matches_one():
    _run_mesh_script(4)

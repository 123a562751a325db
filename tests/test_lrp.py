"""Spike LRP-ε: a tiny network by hand (NumPy loops), conservation layer by layer."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from svebi_jax import attribution
from svebi_jax import layers as L
from svebi_jax.interop.nir import make_apply_fn
from svebi_jax.methods import lrp as R

T, BETA, THETA, EPS = 3, 0.8, 0.5, 0.05
TINY = (L.Conv("conv1", 2, 3), L.LIF(), L.Flatten(), L.Dense("out", 3))
TINY_CFG = L.SNNConfig(num_steps=T, beta=BETA, threshold=THETA)


def _tiny():
    rng = np.random.default_rng(0)
    params = {
        "conv1": {
            "kernel": rng.normal(0.3, 0.5, (3, 3, 1, 2)),
            "bias": np.array([0.1, -0.05]),
        },
        "out": {"kernel": rng.normal(0, 1, (8, 3)), "bias": np.array([0.2, 0.3, -0.1])},
    }
    images = rng.uniform(0, 1, (2, 4, 4, 1))
    return params, images


def _sign0(z):
    return np.where(z >= 0, 1.0, -1.0)


def _np_lrp(params, x, target):
    """Independent float64 LRP-ε of the tiny network with explicit loops."""
    k, kb = params["conv1"]["kernel"], params["conv1"]["bias"]
    w, wb = params["out"]["kernel"], params["out"]["bias"]
    nb = x.shape[0]
    cur = np.zeros((nb, 2, 2, 2))
    for i in range(2):
        for j in range(2):
            cur[:, i, j, :] = np.einsum("buvc,uvco->bo", x[:, i : i + 3, j : j + 3, :], k) + kb
    u, s = np.zeros((T, nb, 2, 2, 2)), np.zeros((T, nb, 2, 2, 2))
    for t in range(T):
        u_prev = u[t - 1] if t else 0.0
        s_prev = s[t - 1] if t else 0.0
        u[t] = BETA * u_prev + cur - THETA * s_prev
        s[t] = u[t] > THETA
    flat = s.reshape(T, nb, 8)
    z = flat @ w + wb  # [T, B, 3]
    score = z[:, np.arange(nb), target].sum(0) / T
    absorbed = np.zeros(nb)
    # readout: R[t] = z_c[t] / T, then the ε-rule of the Dense layer
    r_flat = np.zeros((T, nb, 8))
    for t in range(T):
        for b in range(nb):
            c = target[b]
            r = z[t, b, c] / T
            st = z[t, b, c] + EPS * _sign0(z[t, b, c])
            r_flat[t, b] = flat[t, b] * w[:, c] / st * r
            absorbed[b] += wb[c] / st * r + (r - z[t, b, c] / st * r)
    r_s = r_flat.reshape(T, nb, 2, 2, 2)
    # LIF: R_U[t] = R_S[t] + R_P[t+1]; split U[t] = P[t] + I[t]
    r_cur = np.zeros_like(r_s)
    carry = np.zeros_like(r_s[0])
    for t in reversed(range(T)):
        ru = r_s[t] + carry
        st = u[t] + EPS * _sign0(u[t])
        r_cur[t] = cur / st * ru
        carry = (u[t] - cur) / st * ru
        absorbed += (ru - r_cur[t] - carry).reshape(nb, -1).sum(1)
    absorbed += carry.reshape(nb, -1).sum(1)  # P[0] = 0: nothing (up to rounding)
    # conv: R_x[t] = x * sum_{ij,o} k s[ij,o] over the patches that cover the pixel
    r_x = np.zeros((T,) + x.shape)
    st = cur + EPS * _sign0(cur)
    for t in range(T):
        sc = r_cur[t] / st
        for i in range(2):
            for j in range(2):
                r_x[t, :, i : i + 3, j : j + 3, :] += x[:, i : i + 3, j : j + 3, :] * np.einsum(
                    "uvco,bo->buvc", k, sc[:, i, j, :]
                )
        absorbed += (sc * kb).reshape(nb, -1).sum(1) + (r_cur[t] - cur * sc).reshape(nb, -1).sum(1)
    return r_x, score, absorbed


def test_tiny_network_by_hand_and_conservation():
    params, images = _tiny()
    target = np.array([2, 0])
    r_x, score, absorbed = _np_lrp(params, images, target)
    # conservation in NumPy: input relevance + absorbed shares (bias, ε) = explained logit
    np.testing.assert_allclose(r_x.reshape(T, 2, -1).sum((0, 2)) + absorbed, score, atol=1e-12)
    assert np.all(np.abs(absorbed) > 1e-3)  # the biases and ε really absorb something
    p32 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params)
    x32 = jnp.asarray(images, jnp.float32)
    apply_fn = make_apply_fn(TINY, TINY_CFG, (4, 4, 1))
    net = (TINY, TINY_CFG)
    res = R.lrp_relevance(apply_fn, p32, x32, target, network=net, epsilon=EPS)
    np.testing.assert_allclose(res.score, score, rtol=1e-5)
    np.testing.assert_allclose(res.input, r_x, atol=2e-6)
    budgets = res.budgets
    assert list(budgets) == ["00_conv1", "01_lif_conv1", "02_flatten", "03_out"]
    got_absorbed = sum(b.bias + b.eps + b.other for b in budgets.values())
    np.testing.assert_allclose(got_absorbed, absorbed, atol=2e-6)
    maps = attribution.lrp(apply_fn, network=net, epsilon=EPS)(p32, x32, target)
    np.testing.assert_allclose(maps, r_x.sum((0, -1)), atol=2e-6)
    steps = attribution.lrp(apply_fn, network=net, epsilon=EPS, time_resolved=True)
    np.testing.assert_allclose(steps(p32, x32, target), r_x.sum(-1), atol=2e-6)


@pytest.mark.parametrize("reset", ["subtract_then_leak"])
def test_conservation_per_layer_on_a_deeper_network(reset):
    layers = (
        L.Conv("conv1", 3, 3),
        L.LIF(),
        L.MaxPool(2),
        L.Conv("conv2", 4, 2),
        L.LIF(),
        L.AvgPool(1),
        L.Flatten(),
        L.Dense("fc1", 6),
        L.LIF(),
        L.Dense("fc2", 4),
    )
    cfg = L.SNNConfig(num_steps=4, beta=0.9, threshold=0.4, reset=reset, readout_beta=0.7)
    rng = np.random.default_rng(3)
    shapes = {"conv1": (3, 3, 1, 3), "conv2": (2, 2, 3, 4), "fc1": (16, 6), "fc2": (6, 4)}
    params = {
        n: {
            "kernel": jnp.asarray(rng.normal(0.15, 0.6, s), jnp.float32),
            "bias": jnp.asarray(rng.normal(0, 0.1, s[-1]), jnp.float32),
        }
        for n, s in shapes.items()
    }
    images = jnp.asarray(rng.uniform(0, 1, (3, 8, 8, 1)), jnp.float32)
    apply_fn = make_apply_fn(layers, cfg, (8, 8, 1))
    res = R.lrp_relevance(apply_fn, params, images, network=(layers, cfg), epsilon=0.01)
    np.testing.assert_allclose(res.score, apply_fn(params, images).logits.max(-1), rtol=1e-6)
    budgets = list(res.budgets.values())
    # the readout receives exactly the explained logit
    np.testing.assert_allclose(budgets[-1].upper, res.score, rtol=1e-5)
    for below, above in zip(budgets[:-1], budgets[1:], strict=True):
        np.testing.assert_allclose(below.upper, above.lower, rtol=1e-6, atol=1e-7)
    bias = eps = 0.0
    for b in budgets:
        np.testing.assert_allclose(b.upper, b.lower + b.bias + b.eps + b.other, atol=2e-6)
        bias, eps = bias + b.bias, eps + b.eps
    assert np.all(np.abs(bias) > 1e-4) and np.all(np.abs(eps) > 1e-6)
    assert np.all(np.abs(budgets[0].lower) > 1e-3)  # relevance reaches the pixels
    np.testing.assert_allclose(budgets[0].lower, res.input.sum((0, 2, 3, 4)), rtol=1e-6)
    np.testing.assert_allclose(res.input.sum((0, 2, 3, 4)) + bias + eps, res.score, atol=5e-6)


def test_errors():
    params, images = _tiny()
    apply_fn = make_apply_fn(TINY, TINY_CFG, (4, 4, 1))
    with pytest.raises(ValueError, match="epsilon"):
        attribution.lrp(apply_fn, network=(TINY, TINY_CFG), epsilon=-1.0)
    with pytest.raises(ValueError, match="network="):
        attribution.lrp(apply_fn)(params, images)
    with pytest.raises(ValueError, match="network must be"):
        attribution.lrp(apply_fn, network=TINY)

"""SNN Grad-CAM: hand-computed weights and maps, and the spike gradient against the runner's."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from svebi_jax import attribution
from svebi_jax import heatmaps as H
from svebi_jax import layers as L
from svebi_jax.interop.nir import make_apply_fn
from svebi_jax.methods import gradcam as G
from svebi_jax.models.snn import SpikingNetwork, functional

T, BETA, THETA = 3, 0.8, 0.5
TINY = (L.Conv("conv1", 2, 3), L.LIF(), L.Flatten(), L.Dense("out", 3))
TINY_CFG = L.SNNConfig(num_steps=T, beta=BETA, threshold=THETA)


def _tiny():
    rng = np.random.default_rng(0)
    params = {
        "conv1": {
            "kernel": rng.normal(0.3, 0.5, (3, 3, 1, 2)).astype(np.float32),
            "bias": np.array([0.1, -0.05], np.float32),
        },
        "out": {
            "kernel": rng.normal(0, 1, (8, 3)).astype(np.float32),
            "bias": np.array([0.2, 0.0, -0.1], np.float32),
        },
    }
    images = rng.uniform(0, 1, (2, 4, 4, 1)).astype(np.float32)
    apply_fn = make_apply_fn(TINY, TINY_CFG, (4, 4, 1))
    return apply_fn, params, images


def _np_conv(x, k, b):
    kh, kw = k.shape[:2]
    h, w = x.shape[1] - kh + 1, x.shape[2] - kw + 1
    out = np.zeros((x.shape[0], h, w, k.shape[3]))
    for i in range(h):
        for j in range(w):
            patch = x[:, i : i + kh, j : j + kw, :]
            out[:, i, j, :] = np.einsum("buvc,uvco->bo", patch, k) + b
    return out


def _np_lif(cur):
    """Subtractive reset: U[t] = beta U[t-1] + I[t] - theta S[t-1], S = U > theta."""
    u_prev = np.zeros(cur.shape[1:])
    s_prev = np.zeros(cur.shape[1:])
    spikes, mem = [], []
    for t in range(cur.shape[0]):
        u = BETA * u_prev + cur[t] - THETA * s_prev
        s = (u > THETA).astype(float)
        spikes.append(s)
        mem.append(u)
        u_prev, s_prev = u, s
    return np.stack(spikes), np.stack(mem)


def test_tiny_network_by_hand():
    apply_fn, params, images = _tiny()
    net = (TINY, TINY_CFG)
    cur = _np_conv(images, params["conv1"]["kernel"], params["conv1"]["bias"])
    spikes, _ = _np_lif(np.broadcast_to(cur, (T,) + cur.shape))
    w_out = params["out"]["kernel"]
    logits = spikes.reshape(T, 2, -1).sum(0) @ w_out / T + params["out"]["bias"]
    np.testing.assert_allclose(apply_fn(params, images).logits, logits, rtol=1e-5, atol=1e-6)
    target = np.array([2, 0])
    # The readout integrates the flattened spikes: dy_c / dS[t, i, j, k] = W[(i, j, k), c] / T.
    grads = w_out[:, target].T.reshape(2, 2, 2, 2)  # [B, h, w, K]
    alpha = T * grads.sum(axis=(1, 2)) / T / 4  # sum over t and positions, / Z = h*w
    steps = np.maximum(np.einsum("tbhwk,bk->tbhw", spikes, alpha), 0)
    assert spikes.sum() > 0 and (steps > 0).any()
    got_a = G.gradcam_weights(apply_fn, params, images, target, layer="conv1", network=net)
    got_s = G.gradcam_steps(apply_fn, params, images, target, layer="conv1", network=net)
    np.testing.assert_allclose(got_a, alpha, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(got_s, steps, rtol=1e-5, atol=1e-7)
    # per-step weights: the readout's gradient is the same at every step, alpha_t = alpha / T
    per_step = G.gradcam_weights(
        apply_fn, params, images, target, layer="conv1", network=net, channel_weights="per_step"
    )
    np.testing.assert_allclose(per_step, np.broadcast_to(alpha / T, (T, 2, 2)), rtol=1e-5)
    attr_fn = attribution.gradcam(apply_fn, layer="conv1", network=net)
    geo = L.layer_geometry(TINY, (4, 4, 1))["conv1"]
    expected = H.minmax_normalize(H.upsample_aligned(steps.sum(0), geo, (4, 4)))
    np.testing.assert_allclose(attr_fn(params, images, target), expected, atol=1e-6)
    last = attribution.gradcam(apply_fn, layer="conv1", network=net, time_reduction=-1)
    expected = H.minmax_normalize(H.upsample_aligned(steps[-1], geo, (4, 4)))
    np.testing.assert_allclose(last(params, images, target), expected, atol=1e-6)


DEEP = (
    L.Conv("conv1", 3, 3),
    L.LIF(),
    L.MaxPool(2),
    L.Conv("conv2", 4, 2),
    L.LIF(),
    L.Flatten(),
    L.Dense("fc1", 6),
    L.LIF(),
    L.Dense("fc2", 4),
)
DEEP_CFG = L.SNNConfig(num_steps=3, beta=0.9, threshold=0.4)


@pytest.fixture(scope="module")
def deep():
    model = SpikingNetwork(DEEP, input_shape=(8, 8, 1), config=DEEP_CFG, rngs=nnx.Rngs(0))
    apply_fn, params = functional(model)
    images = jax.random.uniform(jax.random.key(1), (3, 8, 8, 1))
    return apply_fn, params, images


def test_spike_gradient_matches_the_runners_mask_gradient(deep):
    # sum_{t,i,j} dy/dS^k_{ij,t} S^k_{ij,t} is the gradient w.r.t. a channel mask multiplied
    # into the spikes, which the model's own runner (custom LIF adjoints) computes.
    apply_fn, params, images = deep
    output = "probability"
    target = jnp.array([0, 1, 3])
    net, weights = G.TR.resolve(apply_fn, params)
    spikes, grads, _ = G._spike_grads(net, weights, images, target, "conv2", output)
    out = apply_fn(params, images, record="spikes")
    np.testing.assert_array_equal(spikes, out.spikes["conv2"])

    def score(mask):
        logits = apply_fn(params, images, masks={"conv2": mask}).logits
        p = jax.nn.softmax(logits) if output == "probability" else logits
        return jnp.take_along_axis(p, target[:, None], axis=1).sum()

    by_mask = jax.grad(score)(jnp.ones((3, 4)))
    assert float(jnp.abs(by_mask).max()) > 1e-4
    np.testing.assert_allclose((grads * spikes).sum(axis=(0, 2, 3)), by_mask, atol=2e-6)
    per_step = G.gradcam_weights(
        apply_fn, params, images, target, layer="conv2", output=output, channel_weights="per_step"
    )
    summed = grads.sum(axis=(0, 2, 3)) / 4  # the paper's alpha (Z = 2 x 2 positions)
    np.testing.assert_allclose(per_step.sum(axis=0), summed, rtol=1e-5, atol=1e-9)


def test_predicted_target_jit_and_errors(deep):
    apply_fn, params, images = deep
    attr_fn = attribution.gradcam(apply_fn, layer="conv1")
    pred = jnp.argmax(apply_fn(params, images).logits, axis=-1)
    maps = attr_fn(params, images)
    assert maps.shape == (3, 8, 8) and float(maps.max()) == 1.0
    np.testing.assert_allclose(attr_fn(params, images, pred), maps, atol=1e-6)
    with pytest.raises(ValueError, match="layer must be one of"):
        attribution.gradcam(apply_fn, layer="fc1")(params, images)
    with pytest.raises(ValueError, match="time_reduction"):
        attribution.gradcam(apply_fn, layer="conv1", time_reduction="mean")
    with pytest.raises(ValueError, match="target"):
        attr_fn(params, images, jnp.array([0, 1, 9]))
    plain = make_apply_fn(TINY, TINY_CFG, (4, 4, 1))
    with pytest.raises(ValueError, match="network="):
        attribution.gradcam(plain, layer="conv1")(_tiny()[1], _tiny()[2])

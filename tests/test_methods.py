"""Tests for svebi_jax.methods (SNN-Grad2D, SNN-IG2D, SAM, trivial baselines)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from svebi_jax.layers import SNNConfig, SNNOutput
from svebi_jax.methods.grad import grad2d_maps, per_step_gradients, predicted_classes
from svebi_jax.methods.ig import completeness, ig_alphas, integrated_gradients_result
from svebi_jax.methods.spike_activation_map import (
    minmax_normalize,
    neuronal_contribution_score,
    sam_heatmaps,
    sam_maps,
    sam_maps_from_spikes,
)
from svebi_jax.methods.trivial import centered_gaussian_maps, input_intensity_maps, random_maps
from svebi_jax.models import ShallowSNN, functional

# ----------------------------------------------------------------------------------------------
# Smooth stand-ins for the SNN (same protocol): static [B, H, W, C] or time-major input.


def _per_step(x, fn):
    """Applies ``fn`` ([N, H, W, C] -> [N, K]) to a static or time-major input; time-mean."""
    if x.ndim == 5:
        t, b = x.shape[:2]
        return fn(x.reshape((t * b,) + x.shape[2:])).reshape(t, b, -1).mean(axis=0)
    return fn(x)


def make_tanh_model(w):
    """``logits = mean_t tanh(x_t.reshape(B, -1) @ W)``: smooth, non-linear."""

    def apply_fn(params, images, *, record=None, masks=None):
        logits = _per_step(images, lambda x: jnp.tanh(x.reshape(x.shape[0], -1) @ params["w"]))
        return SNNOutput(logits, {})

    return apply_fn, {"w": jnp.asarray(w, jnp.float32)}


def make_softplus_model(w1, w2):
    """Two-layer softplus network (smooth, non-linear, non-saturating)."""

    def fn(params, x):
        h = jax.nn.softplus(x.reshape(x.shape[0], -1) @ params["w1"])
        return h @ params["w2"]

    def apply_fn(params, images, *, record=None, masks=None):
        return SNNOutput(_per_step(images, lambda x: fn(params, x)), {})

    return apply_fn, {"w1": jnp.asarray(w1, jnp.float32), "w2": jnp.asarray(w2, jnp.float32)}


def make_linear_model(w, bias):
    def apply_fn(params, images, *, record=None, masks=None):
        logits = _per_step(images, lambda x: x.reshape(x.shape[0], -1) @ params["w"] + params["b"])
        return SNNOutput(logits, {})

    return apply_fn, {"w": jnp.asarray(w, jnp.float32), "b": jnp.asarray(bias, jnp.float32)}


def np_tanh_logits(w, x):
    return np.tanh(x.reshape(x.shape[0], -1) @ w)


def central_fd(fn, x, eps=1e-5):
    """Central finite differences of a scalar float64 function of ``x``."""
    g = np.zeros_like(x)
    flat = g.reshape(-1)
    for i in range(x.size):
        d = np.zeros(x.size)
        d[i] = eps
        d = d.reshape(x.shape)
        flat[i] = (fn(x + d) - fn(x - d)) / (2 * eps)
    return g


@pytest.fixture(scope="module")
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="module")
def small_snn():
    """A real (randomly initialized) ShallowSNN, narrowed to keep the tests fast."""
    model = nnx.jit(
        lambda: ShallowSNN(
            rngs=nnx.Rngs(0), channels=(4, 8), hidden=16, config=SNNConfig(num_steps=6)
        )
    )()
    apply_fn, params = functional(model)
    images = jax.random.uniform(jax.random.key(1), (3, 28, 28, 1)) * 3.0
    return apply_fn, params, images


# ----------------------------------------------------------------------------------------------
# SNN-Grad2D


def test_grad2d_matches_central_finite_differences(rng):
    h, w_, c, k = 4, 3, 2, 5
    x = rng.uniform(0, 1, (2, h, w_, c))
    w = rng.normal(0, 0.5, (h * w_ * c, k))
    apply_fn, params = make_tanh_model(w)
    classes = np.array([1, 3])
    signed = grad2d_maps(
        apply_fn,
        params,
        jnp.asarray(x, jnp.float32),
        jnp.asarray(classes),
        num_steps=4,
        absolute=False,
        channel_reduction="none",
    )
    fd = np.stack(
        [
            central_fd(lambda v, i=i: np_tanh_logits(w, v[None])[0, classes[i]], x[i])
            for i in range(2)
        ]
    )
    np.testing.assert_allclose(np.asarray(signed), fd, atol=1e-5)
    # Reductions act on |g| over channels.
    for red, ref in (
        ("max", np.abs(fd).max(-1)),
        ("sum", np.abs(fd).sum(-1)),
        ("mean", np.abs(fd).mean(-1)),
    ):
        got = grad2d_maps(
            apply_fn, params, jnp.asarray(x, jnp.float32), jnp.asarray(classes), num_steps=4,
            channel_reduction=red,
        )  # fmt: skip
        np.testing.assert_allclose(np.asarray(got), ref, atol=1e-5)
    got = grad2d_maps(
        apply_fn, params, jnp.asarray(x, jnp.float32), jnp.asarray(classes), num_steps=4,
        absolute=False, channel_reduction="sum",
    )  # fmt: skip
    np.testing.assert_allclose(np.asarray(got), fd.sum(-1), atol=1e-5)


def test_grad2d_probability_and_default_class(rng):
    x = rng.uniform(0, 1, (1, 3, 3, 1))
    w = rng.normal(0, 1.0, (9, 4))
    apply_fn, params = make_tanh_model(w)
    pred = int(np.argmax(np_tanh_logits(w, x)[0]))
    assert int(predicted_classes(apply_fn, params, jnp.asarray(x, jnp.float32))[0]) == pred

    def prob(v):
        z = np_tanh_logits(w, v[None])[0]
        e = np.exp(z - z.max())
        return (e / e.sum())[pred]

    fd = central_fd(prob, x[0])
    got = grad2d_maps(
        apply_fn,
        params,
        jnp.asarray(x, jnp.float32),
        num_steps=3,
        output="probability",
        absolute=False,
        channel_reduction="none",
    )
    np.testing.assert_allclose(np.asarray(got)[0], fd, atol=1e-5)


def test_per_step_gradients_time_major_on_smooth_model(rng):
    # logits = mean_t tanh(x_t W): each step's gradient is 1/T of the static gradient.
    x = rng.uniform(0, 1, (2, 3, 3, 1))
    w = rng.normal(0, 1.0, (9, 4))
    apply_fn, params = make_tanh_model(w)
    g = per_step_gradients(apply_fn, params, jnp.asarray(x, jnp.float32), 2, num_steps=5)
    assert g.shape == (5, 2, 3, 3, 1)
    fd = np.stack([central_fd(lambda v: np_tanh_logits(w, v[None])[0, 2], x[i]) for i in range(2)])
    np.testing.assert_allclose(np.asarray(g), np.broadcast_to(fd / 5, g.shape), atol=1e-6)


def test_grad2d_time_sum_equals_static_gradient_on_shallow_snn(small_snn):
    apply_fn, params, images = small_snn
    classes = predicted_classes(apply_fn, params, images)
    per_step = per_step_gradients(apply_fn, params, images, classes, num_steps=6)
    assert per_step.shape == (6,) + images.shape

    def static(x):
        logits = apply_fn(params, x).logits
        return jnp.take_along_axis(logits, classes[:, None], axis=-1).sum()

    ref = jax.jit(jax.grad(static))(images)
    assert float(jnp.abs(ref).max()) > 1e-4  # the surrogate gradient is not trivially zero
    np.testing.assert_allclose(np.asarray(per_step.sum(0)), np.asarray(ref), atol=1e-6)
    # The per-step gradients genuinely differ over time (the sum is not T copies of one map).
    assert float(jnp.abs(per_step[0] - per_step[-1]).max()) > 1e-6
    sal = grad2d_maps(apply_fn, params, images, classes, num_steps=6)
    np.testing.assert_allclose(np.asarray(sal), np.abs(np.asarray(ref))[..., 0], atol=1e-6)


# ----------------------------------------------------------------------------------------------
# SNN-IG2D


def test_ig_alphas():
    a, w = ig_alphas(4, "riemann_midpoint")
    np.testing.assert_allclose(a, [0.125, 0.375, 0.625, 0.875])
    np.testing.assert_allclose(w, [0.25] * 4)
    a, w = ig_alphas(4, "trapezoid")
    np.testing.assert_allclose(a, [0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(w, [0.125, 0.25, 0.25, 0.25, 0.125])
    np.testing.assert_allclose(ig_alphas(3, "riemann_left")[0], [0, 1 / 3, 2 / 3])
    np.testing.assert_allclose(ig_alphas(3, "riemann_right")[0], [1 / 3, 2 / 3, 1])
    a, w = ig_alphas(5, "gausslegendre")
    assert w.sum() == pytest.approx(1.0)
    assert np.dot(w, a**4) == pytest.approx(1 / 5)  # exact for polynomials of degree <= 9


def test_ig_linear_model_closed_form(rng):
    x = rng.uniform(0, 1, (3, 4, 4, 2)).astype(np.float32)
    w = rng.normal(0, 1, (32, 6)).astype(np.float32)
    bias = rng.normal(0, 1, 6).astype(np.float32)
    apply_fn, params = make_linear_model(w, bias)
    classes = np.array([0, 5, 2])
    res = integrated_gradients_result(
        apply_fn, params, x, classes, num_steps=3, path_steps=7, channel_reduction="none"
    )
    expected = x * w[:, classes].T.reshape(3, 4, 4, 2)  # IG of a linear model: w * (x - 0)
    np.testing.assert_allclose(np.asarray(res.signed), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(res.attributions), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(res.classes), classes)
    np.testing.assert_allclose(np.asarray(res.completeness_gap), 0.0, atol=1e-5)
    # Non-zero baseline: (x - b) * w.
    base = rng.uniform(0, 1, (4, 4, 2)).astype(np.float32)
    res = integrated_gradients_result(
        apply_fn, params, x, classes, num_steps=2, path_steps=1, baseline=base,
        method="riemann_left", channel_reduction="sum",
    )  # fmt: skip
    np.testing.assert_allclose(
        np.asarray(res.attributions),
        ((x - base) * w[:, classes].T.reshape(3, 4, 4, 2)).sum(-1),
        rtol=1e-5,
        atol=1e-6,
    )


@pytest.mark.parametrize("method", ["riemann_midpoint", "trapezoid"])
def test_ig_completeness_on_smooth_model(rng, method):
    x = rng.uniform(0, 1, (2, 5, 5, 1)).astype(np.float32)
    w1 = rng.normal(0, 0.5, (25, 16))
    w2 = rng.normal(0, 0.5, (16, 4))
    apply_fn, params = make_softplus_model(w1, w2)
    res = integrated_gradients_result(
        apply_fn, params, x, num_steps=2, path_steps=200, method=method, chunk_size=64
    )
    comp = res.completeness
    # The reference output difference, computed independently in float64.
    h = np.logaddexp(0, x.reshape(2, -1).astype(np.float64) @ w1) @ w2
    h0 = np.logaddexp(0, np.zeros((2, 25)) @ w1) @ w2
    cls = np.argmax(h, axis=1)
    np.testing.assert_array_equal(np.asarray(res.classes), cls)
    delta = h[np.arange(2), cls] - h0[np.arange(2), cls]
    np.testing.assert_allclose(np.asarray(comp.output_delta), delta, atol=1e-5)
    assert np.all(np.abs(delta) > 1e-2)
    np.testing.assert_allclose(np.asarray(comp.sum_attributions), delta, atol=1e-4)
    assert float(jnp.abs(res.completeness_gap).max()) < 1e-4
    # The standalone check agrees.
    again = completeness(apply_fn, params, x, res.signed, res.classes)
    np.testing.assert_allclose(np.asarray(again.gap), np.asarray(comp.gap), atol=1e-6)
    # Chunking (with zero-weight padding: 200 = 3 * 64 + 8) does not change the result.
    one_chunk = integrated_gradients_result(
        apply_fn, params, x, num_steps=2, path_steps=200, method=method
    )
    np.testing.assert_allclose(np.asarray(one_chunk.signed), np.asarray(res.signed), atol=1e-6)


@pytest.mark.slow  # ~20 s; IG's closed forms stay
def test_ig_on_shallow_snn_batched_equals_per_image(small_snn):
    apply_fn, params, images = small_snn
    kw = dict(num_steps=6, path_steps=12, chunk_size=5)  # 12 = 5 + 5 + 2 (+3 zero-weight pads)
    batched = integrated_gradients_result(apply_fn, params, images, **kw)
    singles = [
        integrated_gradients_result(apply_fn, params, images[i : i + 1], **kw) for i in range(3)
    ]
    np.testing.assert_allclose(
        np.asarray(batched.signed),
        np.concatenate([np.asarray(s.signed) for s in singles]),
        atol=1e-6,
    )
    np.testing.assert_allclose(
        np.asarray(batched.completeness_gap),
        np.concatenate([np.asarray(s.completeness_gap) for s in singles]),
        atol=1e-6,
    )
    # The SNN's gap is reported, consistent, and non-zero (piecewise-constant forward pass).
    comp = batched.completeness
    np.testing.assert_allclose(
        np.asarray(comp.sum_attributions - comp.output_delta), np.asarray(comp.gap), atol=1e-6
    )
    assert np.all(np.isfinite(np.asarray(comp.gap)))
    assert float(jnp.abs(comp.gap).max()) > 1e-3
    # Midpoint IG with one step is (x - 0) * grad(x / 2).
    res = integrated_gradients_result(apply_fn, params, images, num_steps=6, path_steps=1)
    g_half = per_step_gradients(apply_fn, params, images / 2, res.classes, num_steps=6).sum(0)
    np.testing.assert_allclose(np.asarray(res.signed), np.asarray(images * g_half), atol=1e-6)


# ----------------------------------------------------------------------------------------------
# SAM


def _hand_ncs(spikes, gamma, include_current):
    """Direct transcription of the definition: sum over firing times t' <= t (or < t)."""
    t_len = spikes.shape[0]
    ncs = np.zeros(spikes.shape)
    for t in range(t_len):
        for tp in range(t + 1 if include_current else t):
            ncs[t] += spikes[tp] * np.exp(-gamma * (t - tp))
    return ncs


@pytest.fixture(scope="module")
def spike_train():
    rng = np.random.default_rng(3)
    return (rng.uniform(size=(5, 2, 3, 4, 2)) < 0.5).astype(np.float32)  # [T, B, h, w, C]


def make_mock_snn(spikes):
    def apply_fn(params, images, *, record=None, masks=None):
        rec = {"conv1": jnp.asarray(spikes)} if record == "spikes" else {}
        return SNNOutput(jnp.zeros((images.shape[0], 3)), rec)

    return apply_fn


@pytest.mark.parametrize("include_current", [True, False])
def test_ncs_and_heatmaps_match_hand_computation(spike_train, include_current):
    ncs = neuronal_contribution_score(spike_train, 0.5, include_current=include_current)
    ref = _hand_ncs(spike_train, 0.5, include_current)
    np.testing.assert_allclose(np.asarray(ncs), ref, rtol=1e-6, atol=1e-7)
    heat = sam_heatmaps(spike_train, 0.5, include_current=include_current)
    np.testing.assert_allclose(np.asarray(heat), (ref * spike_train).sum(-1), rtol=1e-6)


def test_ncs_single_neuron_numbers():
    s = np.array([1, 0, 1, 1, 0, 1], np.float32)
    e = np.exp(-0.5)
    expected = [1, e, e**2 + 1, e**3 + e + 1, e**4 + e**2 + e, e**5 + e**3 + e**2 + 1]
    np.testing.assert_allclose(np.asarray(neuronal_contribution_score(s, 0.5)), expected, 1e-6)
    excl = np.asarray(neuronal_contribution_score(s, 0.5, include_current=False))
    np.testing.assert_allclose(excl, np.asarray(expected) - s, rtol=1e-6, atol=1e-7)


def test_sam_on_mock_spikes(spike_train):
    apply_fn = make_mock_snn(spike_train)
    images = jnp.zeros((2, 3, 4, 1))  # same size as the spike maps: resize is the identity
    heat = (_hand_ncs(spike_train, 0.5, True) * spike_train).sum(-1)  # [T, B, h, w]

    def norm(m):
        lo = m.min(axis=(1, 2), keepdims=True)
        hi = m.max(axis=(1, 2), keepdims=True)
        return (m - lo) / (hi - lo)

    got = sam_maps(apply_fn, {}, images, layer="conv1")
    np.testing.assert_allclose(np.asarray(got), norm(heat[-1]), atol=1e-6)
    got = sam_maps(apply_fn, {}, images, layer="conv1", time_reduction="sum")
    np.testing.assert_allclose(np.asarray(got), norm(heat.sum(0)), atol=1e-6)
    got = sam_maps(apply_fn, {}, images, layer="conv1", time_reduction=2, gamma=1.0)
    heat1 = (_hand_ncs(spike_train, 1.0, True) * spike_train).sum(-1)
    np.testing.assert_allclose(np.asarray(got), norm(heat1[2]), atol=1e-6)
    # Nearest 2x upsampling = pixel repetition; a callable upsample is used as given.
    big = jnp.zeros((2, 6, 8, 1))
    got = sam_maps(apply_fn, {}, big, layer="conv1", upsample="nearest")
    np.testing.assert_allclose(
        np.asarray(got), norm(heat[-1]).repeat(2, axis=1).repeat(2, axis=2), atol=1e-6
    )
    got = sam_maps(
        apply_fn, {}, big, layer="conv1",
        upsample=lambda m: jnp.kron(m, jnp.ones((1, 2, 2))),
    )  # fmt: skip
    np.testing.assert_allclose(
        np.asarray(got), norm(heat[-1]).repeat(2, axis=1).repeat(2, axis=2), atol=1e-6
    )
    bil = np.asarray(sam_maps(apply_fn, {}, big, layer="conv1"))
    assert bil.shape == (2, 6, 8) and bil.min() == 0.0 and bil.max() == pytest.approx(1.0)


def test_sam_all_silent_gives_zeros_and_minmax():
    silent = np.zeros((4, 1, 3, 3, 2), np.float32)
    out = sam_maps_from_spikes(silent, size=(6, 6))
    np.testing.assert_array_equal(np.asarray(out), np.zeros((1, 6, 6)))
    m = jnp.array([[[2.0, 4.0], [3.0, 6.0]], [[5.0, 5.0], [5.0, 5.0]]])
    np.testing.assert_allclose(
        np.asarray(minmax_normalize(m)), [[[0, 0.5], [0.25, 1]], [[0, 0], [0, 0]]]
    )


def test_sam_on_shallow_snn(small_snn):
    apply_fn, params, images = small_snn
    out = sam_maps(apply_fn, params, images, layer="conv2")
    spikes = apply_fn(params, images, record="spikes").spikes["conv2"]
    ref = sam_maps_from_spikes(spikes, size=(28, 28))
    np.testing.assert_allclose(np.asarray(out), np.asarray(ref), atol=1e-6)
    assert out.shape == (3, 28, 28)
    assert float(out.min()) == 0.0 and float(out.max()) == pytest.approx(1.0)


# ----------------------------------------------------------------------------------------------
# Trivial baselines


def test_trivial_baselines_exact_values():
    images = jnp.asarray(np.arange(2 * 3 * 3 * 2, dtype=np.float32).reshape(2, 3, 3, 2))
    np.testing.assert_allclose(
        np.asarray(input_intensity_maps(images)), np.asarray(images).mean(-1), rtol=0
    )
    assert float(input_intensity_maps(images)[0, 0, 0]) == 0.5
    key = jax.random.key(7)
    r = random_maps(key, images)
    np.testing.assert_array_equal(np.asarray(r), np.asarray(jax.random.uniform(key, (2, 3, 3))))
    assert float(r.min()) >= 0.0 and float(r.max()) < 1.0
    np.testing.assert_array_equal(np.asarray(random_maps(key, images)), np.asarray(r))
    g = np.asarray(centered_gaussian_maps(jnp.zeros((2, 3, 5, 1)), sigma_fraction=0.5))
    # centre (1, 2); sigma_h = 1.5, sigma_w = 2.5
    assert g.shape == (2, 3, 5)
    assert g[0, 1, 2] == pytest.approx(1.0)
    assert g[1, 0, 0] == pytest.approx(np.exp(-0.5 * (1 / 1.5**2 + 4 / 2.5**2)), rel=1e-6)
    assert g[0, 2, 4] == pytest.approx(np.exp(-0.5 * (1 / 1.5**2 + 4 / 2.5**2)), rel=1e-6)
    assert g[0, 1, 0] == pytest.approx(np.exp(-0.5 * 4 / 2.5**2), rel=1e-6)
    np.testing.assert_array_equal(g[0], g[1])


# ----------------------------------------------------------------------------------------------
# Validation


def test_bad_inputs():
    apply_fn, params = make_tanh_model(np.ones((4, 3)))
    x = jnp.ones((1, 2, 2, 1))
    with pytest.raises(ValueError, match="images"):
        grad2d_maps(apply_fn, params, jnp.ones((2, 2, 1)), num_steps=2)
    with pytest.raises(ValueError, match="images"):
        grad2d_maps(apply_fn, params, x.at[0, 0, 0, 0].set(jnp.nan), num_steps=2)
    with pytest.raises(ValueError, match="classes"):
        grad2d_maps(apply_fn, params, x, jnp.array([3]), num_steps=2)
    with pytest.raises(ValueError, match="classes"):
        integrated_gradients_result(apply_fn, params, x, -1, num_steps=2)
    with pytest.raises(ValueError, match="num_steps"):
        grad2d_maps(apply_fn, params, x, num_steps=0)
    with pytest.raises(ValueError, match="channel_reduction"):
        grad2d_maps(apply_fn, params, x, num_steps=2, channel_reduction="median")
    with pytest.raises(ValueError, match="output"):
        grad2d_maps(apply_fn, params, x, num_steps=2, output="softmax")
    with pytest.raises(ValueError, match="path_steps"):
        integrated_gradients_result(apply_fn, params, x, num_steps=2, path_steps=0)
    with pytest.raises(ValueError, match="method"):
        integrated_gradients_result(apply_fn, params, x, num_steps=2, method="simpson")
    with pytest.raises(ValueError, match="channel_reduction"):
        integrated_gradients_result(apply_fn, params, x, num_steps=2, channel_reduction="l2")
    with pytest.raises(ValueError, match="chunk_size"):
        integrated_gradients_result(apply_fn, params, x, num_steps=2, chunk_size=0)
    with pytest.raises(ValueError, match="baseline"):
        integrated_gradients_result(apply_fn, params, x, num_steps=2, baseline=jnp.zeros((3, 3, 1)))
    with pytest.raises(ValueError, match="images"):
        integrated_gradients_result(apply_fn, params, jnp.full((1, 2, 2, 1), jnp.inf), num_steps=2)
    mock = make_mock_snn(np.zeros((3, 1, 2, 2, 1), np.float32))
    with pytest.raises(ValueError, match="gamma"):
        sam_maps(mock, {}, x, layer="conv1", gamma=0.0)
    with pytest.raises(ValueError, match="gamma"):
        neuronal_contribution_score(jnp.zeros((3, 2)), -1.0)
    with pytest.raises(ValueError, match="layer"):
        sam_maps(mock, {}, x, layer="conv9")
    with pytest.raises(ValueError, match="time_reduction"):
        sam_maps(mock, {}, x, layer="conv1", time_reduction="mean")
    with pytest.raises(ValueError, match="time_reduction"):
        sam_maps(mock, {}, x, layer="conv1", time_reduction=3)
    with pytest.raises(ValueError, match="upsample"):
        sam_maps(mock, {}, x, layer="conv1", upsample="cubic")
    with pytest.raises(ValueError, match="images"):
        sam_maps(mock, {}, jnp.ones((2, 2)), layer="conv1")
    with pytest.raises(ValueError, match="images"):
        input_intensity_maps(jnp.ones((2, 2, 1)))
    with pytest.raises(ValueError, match="images"):
        random_maps(jax.random.key(0), jnp.full((1, 2, 2, 1), jnp.nan))
    with pytest.raises(ValueError, match="sigma_fraction"):
        centered_gaussian_maps(x, sigma_fraction=0.0)


def test_jit_compatible(rng):
    x = jnp.asarray(rng.uniform(0, 1, (2, 3, 3, 1)), jnp.float32)
    apply_fn, params = make_tanh_model(rng.normal(0, 1, (9, 4)))
    eager = grad2d_maps(apply_fn, params, x, num_steps=2)
    jitted = jax.jit(lambda p, v: grad2d_maps(apply_fn, p, v, num_steps=2))(params, x)
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(eager), atol=1e-7)
    eager = integrated_gradients_result(apply_fn, params, x, num_steps=2, path_steps=4).attributions
    jitted = jax.jit(
        lambda p, v: (
            integrated_gradients_result(apply_fn, p, v, num_steps=2, path_steps=4).attributions
        )
    )(params, x)
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(eager), atol=1e-7)


def test_num_steps_is_t_and_the_error_names_the_argument():
    """A Captum habit, num_steps=50 for the path, is refused naming num_steps and path_steps."""
    from svebi_jax import attribution

    model = ShallowSNN(rngs=nnx.Rngs(0), channels=(2, 2), hidden=4)
    apply_fn, _ = functional(model)
    t = apply_fn.info.num_steps
    with pytest.raises(ValueError, match=rf"num_steps is T.*T = {t}\), got 50.*path_steps"):
        attribution.integrated_gradients(apply_fn, num_steps=50)
    with pytest.raises(ValueError, match=r"num_steps is T"):
        attribution.grad2d(apply_fn, num_steps=t + 1)
    attribution.integrated_gradients(apply_fn, num_steps=t, path_steps=50)  # T itself is fine

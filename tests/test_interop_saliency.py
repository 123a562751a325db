"""PAIR saliency's methods on our SNNs through interop.saliency.call_model_function."""

import jax.numpy as jnp
import numpy as np
import pytest

from svebi_jax import attribution
from svebi_jax import layers as L
from svebi_jax.interop import saliency as bridge
from svebi_jax.interop.nir import make_apply_fn
from svebi_jax.methods import gradcam as G

saliency = pytest.importorskip("saliency.core")

T = 3
LAYERS = (
    L.Conv("conv1", 3, 3),
    L.LIF(),
    L.Flatten(),
    L.Dense("fc1", 6),
    L.LIF(),
    L.Dense("out", 3),
)
CFG = L.SNNConfig(num_steps=T, beta=0.9, threshold=0.4, surrogate="sigmoid")
NET = (LAYERS, CFG)


@pytest.fixture(scope="module")
def model():
    rng = np.random.default_rng(0)
    shapes = {"conv1": (3, 3, 1, 3), "fc1": (75, 6), "out": (6, 3)}
    params = {
        n: {
            "kernel": jnp.asarray(rng.normal(0.1, 0.5, s), jnp.float32),
            "bias": jnp.asarray(rng.normal(0, 0.1, s[-1]), jnp.float32),
        }
        for n, s in shapes.items()
    }
    image = rng.uniform(0, 1, (7, 7, 1)).astype(np.float32)
    apply_fn = make_apply_fn(LAYERS, CFG, (7, 7, 1))
    fn = bridge.call_model_function(apply_fn, params, layer="conv1", network=NET)
    return apply_fn, params, image, fn


def test_gradient_saliency_equals_our_input_gradient(model):
    apply_fn, params, image, fn = model
    mask = saliency.GradientSaliency().GetMask(image, fn, {"target": 2})
    ours = attribution.grad2d(apply_fn, num_steps=T, absolute=False, channel_reduction="sum")
    expected = ours(params, image[None], jnp.array([2]))[0]
    assert np.abs(expected).max() > 1e-4
    np.testing.assert_allclose(mask[..., 0], expected, rtol=1e-5, atol=1e-7)
    values = fn(image[None], 2, [bridge.OUTPUT_LAYER_VALUES])[bridge.OUTPUT_LAYER_VALUES]
    np.testing.assert_allclose(values, apply_fn(params, image[None]).logits[:, 2], rtol=1e-6)


def test_integrated_gradients_and_grad_cam(model):
    apply_fn, params, image, fn = model
    args = {"target": 2}
    ig = saliency.IntegratedGradients().GetMask(
        image, fn, args, x_steps=4, x_baseline=np.zeros_like(image), batch_size=4
    )
    grad = attribution.grad2d(apply_fn, num_steps=T, absolute=False, channel_reduction="sum")
    path = np.linspace(0, 1, 4)[:, None, None, None] * image[None]
    expected = np.asarray(grad(params, jnp.asarray(path), jnp.full(4, 2))).mean(0) * image[..., 0]
    np.testing.assert_allclose(ig[..., 0], expected, rtol=1e-5, atol=1e-7)
    cam = saliency.GradCam().GetMask(image, fn, args, should_resize=False, three_dims=False)
    alpha = G.gradcam_weights(
        apply_fn, params, image[None], jnp.array([2]), layer="conv1", network=NET
    )[0]
    counts = apply_fn(params, image[None], record="spikes").spikes["conv1"].sum(0)[0]
    expected = np.maximum(np.einsum("hwk,k->hw", counts, alpha), 0)
    assert expected.max() > 0
    np.testing.assert_allclose(cam, expected, rtol=1e-5, atol=1e-7)


def test_smoothgrad_guided_ig_blur_ig_run(model, monkeypatch):
    _, _, image, fn = model
    # saliency 0.2.1's Guided IG calls np.quantile(..., interpolation=), which NumPy 2 removed
    # (renamed to method=); translate it for the duration of the test.
    quantile = np.quantile

    def compat(a, q, *args, interpolation=None, **kwargs):
        if interpolation is not None:
            kwargs["method"] = interpolation
        return quantile(a, q, *args, **kwargs)

    monkeypatch.setattr(np, "quantile", compat)
    args = {"target": 0}
    np.random.seed(0)  # noqa: NPY002 - GetSmoothedMask draws from NumPy's global generator
    smooth = saliency.GradientSaliency().GetSmoothedMask(image, fn, args, nsamples=3)
    guided = saliency.GuidedIG().GetMask(
        image, fn, args, x_steps=5, x_baseline=np.zeros_like(image), max_dist=1.0, fraction=0.5
    )
    blur = saliency.BlurIG().GetMask(image, fn, args, steps=5, batch_size=5)
    for m in (smooth, guided, blur):
        assert m.shape == image.shape and np.all(np.isfinite(m)) and np.abs(m).max() > 0


@pytest.mark.slow
def test_xrai_runs(model):
    _, _, image, fn = model
    mask = saliency.XRAI().GetMask(image, fn, {"target": 0}, batch_size=25)
    assert mask.shape == image.shape[:2] and np.all(np.isfinite(mask)) and mask.max() > 0


def test_errors(model):
    apply_fn, params, image, fn = model
    with pytest.raises(ValueError, match="target"):
        fn(image[None], {}, [bridge.INPUT_OUTPUT_GRADIENTS])
    with pytest.raises(ValueError, match="unknown key"):
        fn(image[None], 0, ["LOGITS"])
    no_layer = bridge.call_model_function(apply_fn, params)
    with pytest.raises(ValueError, match="layer="):
        no_layer(image[None], 0, [bridge.CONVOLUTION_LAYER_VALUES])

"""SVGG19: topology, geometry, torchvision weight conversion (layouts, fc1 permutation), forward."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from svebi_jax import layers as L
from svebi_jax.models import functional
from svebi_jax.models.vgg import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    SVGG19,
    TORCHVISION_VGG19_KEYS,
    adaptive_avg_pool_matrix,
    convert_torchvision_vgg19,
    imagenet_normalize,
    load_torchvision_vgg19,
    read_state_dict,
    svgg19_layers,
)

WIDTHS = (4, 4, 8, 8, 8)
HIDDEN = 16
CONV_NAMES = tuple(
    f"conv{b}_{i}" for b, n in enumerate((2, 2, 4, 4, 4), start=1) for i in range(1, n + 1)
)
# torchvision vgg19.features indices of the 16 Conv2d modules (Conv, ReLU pairs; MaxPool after
# each block) and vgg19.classifier indices of the 3 Linear modules (Linear, ReLU, Dropout).
TV_CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34)


def _model(size, num_classes=10, config=None):
    return SVGG19(
        input_shape=(size, size, 3),
        num_classes=num_classes,
        widths=WIDTHS,
        hidden=HIDDEN,
        config=config,
        rngs=nnx.Rngs(0),
    )


def _fake_state_dict(fc1_in, num_classes=1000, seed=0, gain=1.0):
    """torchvision-style VGG19 state_dict (torch layouts) with random He-scaled weights."""
    rng = np.random.default_rng(seed)
    sd = {}
    c_in = 3
    for name, idx in zip(CONV_NAMES, TV_CONV_INDICES, strict=True):
        c_out = WIDTHS[int(name[4]) - 1]
        std = gain * math.sqrt(2.0 / (9 * c_in))
        sd[f"features.{idx}.weight"] = (rng.normal(size=(c_out, c_in, 3, 3)) * std).astype(
            np.float32
        )
        sd[f"features.{idx}.bias"] = rng.normal(0.1, 0.1, size=(c_out,)).astype(np.float32)
        c_in = c_out
    for idx, (n_out, n_in) in zip(
        (0, 3, 6), ((HIDDEN, fc1_in), (HIDDEN, HIDDEN), (num_classes, HIDDEN)), strict=True
    ):
        std = gain * math.sqrt(2.0 / n_in)
        sd[f"classifier.{idx}.weight"] = (rng.normal(size=(n_out, n_in)) * std).astype(np.float32)
        sd[f"classifier.{idx}.bias"] = rng.normal(0.1, 0.1, size=(n_out,)).astype(np.float32)
    return sd


def _write(tmp_path, sd, name="vgg19.npz"):
    path = tmp_path / name
    np.savez(path, **sd)
    return path


# ----------------------------------------------------------------------------- topology


def test_layer_specs_and_torchvision_names():
    layers = svgg19_layers(50)
    assert L.conv_layer_names(layers) == CONV_NAMES
    expected = {n: f"features.{i}" for n, i in zip(CONV_NAMES, TV_CONV_INDICES, strict=True)}
    expected.update(fc1="classifier.0", fc2="classifier.3", fc3="classifier.6")
    assert TORCHVISION_VGG19_KEYS == expected
    # conv -> LIF everywhere, MaxPool(2) right after each block's last LIF.
    kinds = "".join(
        {L.Conv: "c", L.LIF: "l", L.MaxPool: "p", L.Flatten: "f", L.Dense: "d"}[type(s)]
        for s in layers
    )
    assert kinds == "clclpclclpclclclclpclclclclpclclclclpfdldld"
    convs = [s for s in layers if isinstance(s, L.Conv)]
    assert all((s.kernel_size, s.stride, s.padding) == (3, 1, 1) for s in convs)
    assert [s.features for s in convs] == [64] * 2 + [128] * 2 + [256] * 4 + [512] * 8
    dense = [s for s in layers if isinstance(s, L.Dense)]
    assert [(s.name, s.features) for s in dense] == [("fc1", 4096), ("fc2", 4096), ("fc3", 50)]
    with pytest.raises(ValueError, match="widths"):
        svgg19_layers(widths=(4, 4, 8))
    with pytest.raises(ValueError, match="num_classes"):
        svgg19_layers(0)


def test_geometry_vgg19_224():
    # Receptive field by hand (pixels; j = jump): a 3x3/pad-1 conv adds 2j, a 2x2/stride-2
    # pool adds j and doubles j.
    #   block1: 1 + 2*(2*1) = 5        pool: 6,   j=2
    #   block2: 6 + 2*(2*2) = 14       pool: 16,  j=4
    #   block3: 16 + 4*(2*4) = 48      pool: 52,  j=8
    #   block4: 52 + 4*(2*8) = 116     pool: 124, j=16
    #   block5: 124 + 4*(2*16) = 252  -> conv5_4 rf = 252 (VGG16 conv5_3, 3 convs: 196)
    # Centre of cell 0: each pool shifts it by j/2: 0.5 + 1 + 2 + 4 = 7.5.
    geo = L.layer_geometry(svgg19_layers(50), (224, 224, 3))
    assert geo["conv1_1"] == L.Geometry(224, 224, 64, 3, 1, 0.0)
    assert geo["conv1_2"].rf == 5
    assert geo["conv2_2"].rf == 14
    assert geo["conv3_4"].rf == 48
    assert geo["conv4_4"].rf == 116
    assert geo["conv5_4"] == L.Geometry(14, 14, 512, 252, 16, 7.5)
    vgg16 = []  # the same arithmetic on VGG16 gives the known conv5_3 value
    for b, n in enumerate((2, 2, 3, 3, 3), start=1):
        vgg16 += [L.Conv(f"conv{b}_{i}", 8, 3, padding=1) for i in range(1, n + 1)]
        vgg16.append(L.MaxPool(2))
    assert L.layer_geometry(vgg16, (224, 224, 3))["conv5_3"].rf == 196
    # 7x7x512 map after the last pool = torchvision's classifier.0 input (25088).
    assert L.input_features(svgg19_layers(50), (224, 224, 3))["fc1"] == 512 * 7 * 7


# ----------------------------------------------------------------------------- weights


def test_conv_layout_matches_torch_convolution(tmp_path):
    model = _model(32)
    sd = _fake_state_dict(fc1_in=8 * 1 * 1)
    load_torchvision_vgg19(model, _write(tmp_path, sd))
    x = jax.random.normal(jax.random.key(3), (2, 32, 32, 8))
    for name, idx, c_in in (("conv1_1", 0, 3), ("conv3_1", 10, 4), ("conv5_4", 34, 8)):
        x_in = x[..., :c_in]
        w, b = sd[f"features.{idx}.weight"], sd[f"features.{idx}.bias"]
        ref = jax.lax.conv_general_dilated(
            jnp.transpose(x_in, (0, 3, 1, 2)),
            w,
            window_strides=(1, 1),
            padding=((1, 1), (1, 1)),
            dimension_numbers=("NCHW", "OIHW", "NCHW"),
        ) + b.reshape(1, -1, 1, 1)
        ref = jnp.transpose(ref, (0, 2, 3, 1))
        np.testing.assert_allclose(getattr(model, name)(x_in), ref, rtol=1e-5, atol=1e-5)
        # The runner's own convolution of the loaded params (NHWC / HWIO).
        p = model.weights()[name]
        ours = jax.lax.conv_general_dilated(
            x_in, p["kernel"], (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        np.testing.assert_allclose(ours + p["bias"], ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(
        model.conv1_2.kernel[...], sd["features.2.weight"].transpose(2, 3, 1, 0)
    )


@pytest.mark.parametrize("size,hw", [(224, 7), (64, 2), (96, 3), (32, 1)])
def test_fc1_rows_permuted_from_nchw_to_nhwc(tmp_path, size, hw):
    c = WIDTHS[-1]
    model = _model(size)
    sd = _fake_state_dict(fc1_in=c * hw * hw)
    load_torchvision_vgg19(model, _write(tmp_path, sd))
    feats = np.random.default_rng(1).normal(size=(3, hw, hw, c)).astype(np.float32)  # NHWC
    ours = feats.reshape(3, -1) @ np.asarray(model.fc1.kernel[...]) + np.asarray(
        model.fc1.bias[...]
    )
    w, b = sd["classifier.0.weight"], sd["classifier.0.bias"]
    torch_order = feats.transpose(0, 3, 1, 2).reshape(3, -1)  # x_nchw.flatten(1)
    np.testing.assert_allclose(ours, torch_order @ w.T + b, rtol=1e-5, atol=1e-5)
    if hw > 1:  # the permutation matters: a plain transpose would be wrong
        assert not np.allclose(feats.reshape(3, -1) @ w.T + b, torch_order @ w.T + b, atol=1e-2)
    # fc2 / fc3-style linears are plain transposes.
    np.testing.assert_array_equal(model.fc2.kernel[...], sd["classifier.3.weight"].T)


def test_adaptive_pool_matrix_matches_torch_bins():
    # torch AdaptiveAvgPool 2 -> 7: bins [floor(i*2/7), ceil((i+1)*2/7)):
    # {0}, {0}, {0}, {0, 1}, {1}, {1}, {1}
    expected = np.array([[1, 0], [1, 0], [1, 0], [0.5, 0.5], [0, 1], [0, 1], [0, 1]])
    np.testing.assert_array_equal(adaptive_avg_pool_matrix(2, 7), expected)
    # 14 -> 7: non-overlapping pairs.
    np.testing.assert_array_equal(adaptive_avg_pool_matrix(14, 7), np.kron(np.eye(7), [0.5, 0.5]))
    np.testing.assert_array_equal(adaptive_avg_pool_matrix(7, 7), np.eye(7))


def _torch_adaptive_avg_pool(x_nchw, out):
    """Direct definition of torch.nn.AdaptiveAvgPool2d on a [B, C, H, W] array."""
    b, c, h, w = x_nchw.shape
    y = np.zeros((b, c, out, out))
    for i in range(out):
        h0, h1 = math.floor(i * h / out), math.ceil((i + 1) * h / out)
        for j in range(out):
            w0, w1 = math.floor(j * w / out), math.ceil((j + 1) * w / out)
            y[:, :, i, j] = x_nchw[:, :, h0:h1, w0:w1].mean(axis=(2, 3))
    return y


@pytest.mark.parametrize("size,hw", [(64, 2), (32, 1)])
def test_fc1_folds_torchvision_adaptive_pool(tmp_path, size, hw):
    # An ImageNet-style classifier.0 takes C*7*7 inputs; on a smaller final map torchvision
    # applies AdaptiveAvgPool2d((7, 7)) first, which the loader folds into fc1.
    c = WIDTHS[-1]
    model = _model(size)
    sd = _fake_state_dict(fc1_in=c * 49)
    load_torchvision_vgg19(model, _write(tmp_path, sd))
    assert model.fc1.kernel.shape == (hw * hw * c, HIDDEN)
    feats = np.random.default_rng(2).normal(size=(3, hw, hw, c))
    ours = feats.reshape(3, -1) @ np.asarray(model.fc1.kernel[...]) + np.asarray(
        model.fc1.bias[...]
    )
    pooled = _torch_adaptive_avg_pool(feats.transpose(0, 3, 1, 2), 7).reshape(3, -1)
    w, b = sd["classifier.0.weight"], sd["classifier.0.bias"]
    np.testing.assert_allclose(ours, pooled @ w.T + b, rtol=1e-5, atol=1e-5)


def test_skip_and_loaded_values(tmp_path):
    model = _model(32, num_classes=10)
    fc3_before = np.asarray(model.fc3.kernel[...])
    sd = _fake_state_dict(fc1_in=8)  # an ImageNet-like 1000-way classifier.6
    load_torchvision_vgg19(model, _write(tmp_path, sd))  # default skip=("fc3",)
    np.testing.assert_array_equal(model.fc3.kernel[...], fc3_before)
    np.testing.assert_array_equal(model.conv4_2.bias[...], sd["features.21.bias"])
    # Pure conversion gives the same arrays; a 1000-way model takes fc3 too.
    conv = convert_torchvision_vgg19(sd, model.layers, model.input_shape, skip=("fc3",))
    assert set(conv) == set(TORCHVISION_VGG19_KEYS) - {"fc3"}
    for name, arrays in conv.items():
        for leaf, value in arrays.items():
            np.testing.assert_array_equal(model.weights()[name][leaf], value)
    full = _model(32, num_classes=1000)
    load_torchvision_vgg19(full, sd)  # in-memory mapping, default skip=()
    np.testing.assert_array_equal(full.fc3.kernel[...], sd["classifier.6.weight"].T)
    with pytest.raises(ValueError, match="'classifier.6.weight'.*\\(1000, 16\\).*\\(10, 16\\)"):
        load_torchvision_vgg19(_model(32, num_classes=10), sd, skip=())


def test_errors_name_the_key(tmp_path):
    sd = _fake_state_dict(fc1_in=8)
    missing = {k: v for k, v in sd.items() if k != "features.12.weight"}
    with pytest.raises(ValueError, match="missing key 'features.12.weight'.*conv3_2"):
        load_torchvision_vgg19(_model(32), _write(tmp_path, missing))
    wrong = dict(sd)
    wrong["features.5.weight"] = np.zeros((4, 4, 5, 5), np.float32)
    with pytest.raises(ValueError, match=r"'features.5.weight'.*\(4, 4, 5, 5\).*\(4, 4, 3, 3\)"):
        load_torchvision_vgg19(_model(32), _write(tmp_path, wrong, "wrong.npz"))
    bad_bias = dict(sd, **{"features.0.bias": np.zeros(5, np.float32)})
    with pytest.raises(ValueError, match=r"'features.0.bias'.*\(5,\).*\(4,\)"):
        load_torchvision_vgg19(_model(32), bad_bias)
    bad_fc1 = dict(sd, **{"classifier.0.weight": np.zeros((HIDDEN, 9), np.float32)})
    with pytest.raises(ValueError, match=r"'classifier.0.weight'.*\(16, 9\).*\(16, 8\)"):
        load_torchvision_vgg19(_model(32), bad_fc1)
    with pytest.raises(ValueError, match="unexpected key 'extra.weight'"):
        load_torchvision_vgg19(_model(32), dict(sd, **{"extra.weight": np.zeros(1)}))
    with pytest.raises(ValueError, match="skip: unknown layer 'fc9'"):
        load_torchvision_vgg19(_model(32), sd, skip=("fc9",))
    with pytest.raises(ValueError, match="unknown weights file format '.pth'"):
        load_torchvision_vgg19(_model(32), tmp_path / "vgg19.pth")
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        read_state_dict(tmp_path / "nope.npz")
    np.savez(tmp_path / "obj.npz", a=np.array([{"x": 1}], dtype=object))
    with pytest.raises(ValueError, match="cannot read npz"):  # never unpickles
        read_state_dict(tmp_path / "obj.npz")
    # strict=False: a layer absent from the file keeps its values; extra keys are ignored.
    model = _model(32)
    before = np.asarray(model.conv3_2.kernel[...])
    partial = {k: v for k, v in sd.items() if not k.startswith("features.12.")}
    load_torchvision_vgg19(model, dict(partial, extra=np.zeros(1)), strict=False)
    np.testing.assert_array_equal(model.conv3_2.kernel[...], before)
    np.testing.assert_array_equal(model.conv3_3.bias[...], sd["features.14.bias"])


def test_safetensors(tmp_path):
    sd = _fake_state_dict(fc1_in=8)
    try:
        from safetensors.numpy import save_file
    except ImportError:
        (tmp_path / "w.safetensors").write_bytes(b"\0" * 16)
        with pytest.raises(ImportError, match="safetensors"):
            read_state_dict(tmp_path / "w.safetensors")
        return
    save_file(sd, str(tmp_path / "w.safetensors"))
    model = load_torchvision_vgg19(_model(32), tmp_path / "w.safetensors")
    np.testing.assert_array_equal(model.fc1.bias[...], sd["classifier.0.bias"])


def test_imagenet_normalize():
    img = jnp.full((2, 4, 4, 3), 0.5)
    out = imagenet_normalize(img)
    np.testing.assert_allclose(
        out[0, 0, 0],
        [(0.5 - 0.485) / 0.229, (0.5 - 0.456) / 0.224, (0.5 - 0.406) / 0.225],
        rtol=1e-6,
    )
    assert IMAGENET_MEAN == (0.485, 0.456, 0.406) and IMAGENET_STD == (0.229, 0.224, 0.225)
    np.testing.assert_allclose(imagenet_normalize(jnp.asarray(IMAGENET_MEAN)), 0.0, atol=1e-7)
    with pytest.raises(ValueError, match="size 3"):
        imagenet_normalize(jnp.zeros((2, 4, 4, 1)))


# ----------------------------------------------------------------------------- forward


def _lif_reference(currents, beta=0.95, theta=1.0):
    """numpy LIF, subtract reset: U[t] = beta U[t-1] + I[t] - theta S[t-1], S = U > theta."""
    u = np.zeros_like(currents[0])
    s = np.zeros_like(currents[0])
    out = []
    for i_t in currents:
        u = beta * u + i_t - theta * s
        s = (u > theta).astype(currents.dtype)
        out.append(s)
    return np.stack(out)


def test_forward_t25_logits_and_spike_maps(tmp_path):
    model = _model(32)  # default config: T = 25, beta = 0.95, theta = 1
    assert model.config == L.SNNConfig(num_steps=25, beta=0.95, threshold=1.0)
    sd = _fake_state_dict(fc1_in=8, gain=2.0)
    load_torchvision_vgg19(model, _write(tmp_path, sd))
    images = imagenet_normalize(jax.random.uniform(jax.random.key(0), (2, 32, 32, 3)))
    apply_fn, params = functional(model)
    # Stepwise mode (one scan over T = 25 steps) compiles fast on CPU.
    run = jax.jit(lambda p, x: apply_fn(p, x, record="spikes", mode="stepwise"))
    out = run(params, images)
    assert out.logits.shape == (2, 10)
    assert tuple(out.spikes) == CONV_NAMES
    for name, train in out.spikes.items():
        size = 32 // 2 ** (int(name[4]) - 1)
        assert train.shape == (25, 2, size, size, WIDTHS[int(name[4]) - 1])
        assert set(np.unique(np.asarray(train))) <= {0.0, 1.0}
    assert float(out.spikes["conv5_4"].mean()) > 0.05  # activity reaches the last block
    # Independent numpy reference of the tail: pool(conv5_4) -> fc1 -> LIF -> fc2 -> LIF ->
    # fc3 integrator, logits = sum_t fc3(s_t) / T.
    s5 = np.asarray(out.spikes["conv5_4"])  # [T, B, 2, 2, 8]
    x = s5.max(axis=(2, 3))  # MaxPool(2) to 1x1, flatten -> [T, B, 8]
    w = {n: np.asarray(getattr(model, n).kernel[...]) for n in ("fc1", "fc2", "fc3")}
    b = {n: np.asarray(getattr(model, n).bias[...]) for n in ("fc1", "fc2", "fc3")}
    s1 = _lif_reference(x @ w["fc1"] + b["fc1"])
    s2 = _lif_reference(s1 @ w["fc2"] + b["fc2"])
    assert 0 < s2.mean() < 1
    logits = (s2 @ w["fc3"] + b["fc3"]).sum(0) / 25
    np.testing.assert_allclose(out.logits, logits, rtol=1e-5, atol=1e-5)


def test_time_batched_equals_stepwise_loaded(tmp_path):
    model = _model(32, config=L.SNNConfig(num_steps=4))
    load_torchvision_vgg19(model, _fake_state_dict(fc1_in=8, gain=2.0))
    images = imagenet_normalize(jax.random.uniform(jax.random.key(1), (2, 32, 32, 3)))
    apply_fn, params = functional(model)
    run = jax.jit(apply_fn, static_argnames=("record", "mode"))
    a = run(params, images, record="mean")
    b = run(params, images, record="mean", mode="stepwise")
    for name in CONV_NAMES:
        np.testing.assert_array_equal(a.spikes[name], b.spikes[name])
    np.testing.assert_allclose(a.logits, b.logits, rtol=1e-5, atol=1e-6)

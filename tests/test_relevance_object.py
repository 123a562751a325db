"""fit_relevance and the Relevance object: equal to the three-call pipeline, files, refusals."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import svebi_jax as sv
from svebi_jax import attribution, data
from svebi_jax.data import Dataset
from svebi_jax.layers import SNNOutput
from svebi_jax.models import ShallowSNN, functional
from svebi_jax.relevance import Relevance, fit_relevance


@pytest.fixture(scope="module")
def net():
    model = ShallowSNN(rngs=nnx.Rngs(0), channels=(4, 6), hidden=16)
    return functional(model)


@pytest.fixture(scope="module")
def images():
    # real digits: the untrained net predicts 6 different classes for them
    return np.asarray(data.load("mnist-5k").images[:24])


@pytest.fixture(scope="module")
def rel(net, images):
    apply_fn, params = net
    return fit_relevance(apply_fn, params, images, mu=0.5, batch_size=8)


@pytest.fixture(scope="module")
def old(net, images):
    """The three calls fit_relevance replaces, written out."""
    apply_fn, params = net
    resp = sv.compute_responses(apply_fn, params, images, batch_size=8)
    sol = sv.mu_lasso(resp.X, resp.L, 0.5)
    return resp, sol


def test_equals_the_three_calls(rel, old):
    resp, sol = old
    np.testing.assert_array_equal(rel.W, np.asarray(sol.W))
    assert rel.index == resp.index and rel.mu == 0.5 and rel.num_classes == 10
    assert rel.filters == sv.relevant_filters(sol.W, resp.index)
    for k, m in sv.masks_from_weights(sol.W, resp.index).items():
        np.testing.assert_array_equal(rel.masks[k], m)
    assert rel.layer_distribution() == sv.layer_distribution(rel.filters)
    # something is relevant, and the weights obey the budget
    assert sum(rel.layer_distribution().values()) > 0
    assert np.all(rel.W.sum(0) <= 0.5 + 1e-5)
    np.testing.assert_array_equal(rel.lasso.objective, np.asarray(sol.objective))


def test_immutable(rel):
    with pytest.raises(ValueError):
        rel.W[0, 0] = 1.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        rel.mu = 3.0


def test_data_forms_agree(net, images, rel, old):
    apply_fn, params = net
    labels = np.zeros(len(images), np.int32)
    stream = ((images[i : i + 8], labels[i : i + 8]) for i in range(0, len(images), 8))
    for given in ((images, labels), Dataset(images, labels, 10, "digits"), old[0], stream):
        other = fit_relevance(apply_fn, params, given, mu=0.5, batch_size=8)
        np.testing.assert_array_equal(other.W, rel.W)
        assert other.input_shape == (28, 28, 1)


def test_attribution_is_the_svebi_factory(net, images, rel):
    apply_fn, params = net
    x = jnp.asarray(images[:3])
    got = rel.attribution()(params, x, None)
    want = attribution.svebi(apply_fn, rel.masks)(params, x, None)
    np.testing.assert_array_equal(got, want)


@pytest.mark.slow  # two more compilations; the default path is tested above
def test_attribution_with_lasso_weights_uses_the_weighted_masks(net, images, rel):
    apply_fn, params = net
    x = jnp.asarray(images[:3])
    opts = attribution.SVEBIOptions(filter_weighting="lasso", placement="stretch")
    got = rel.attribution("conv1", opts)(params, x, jnp.array([1, 2, 3]))
    want = attribution.svebi(
        apply_fn,
        sv.masks_from_weights(rel.W, rel.index, keep_weights=True),
        layer="conv1",
        options=opts,
    )(params, x, jnp.array([1, 2, 3]))
    np.testing.assert_array_equal(got, want)


def test_save_load_round_trip_bit_exact(tmp_path, net, rel):
    apply_fn, params = net
    p = rel.save(tmp_path / "rel.npz")
    back = Relevance.load(p, apply_fn=apply_fn)
    assert back.W.dtype == rel.W.dtype
    np.testing.assert_array_equal(back.W, rel.W)
    assert back.index == rel.index and back.mu == rel.mu
    assert back.input_shape == (28, 28, 1) and back.apply_fn is apply_fn
    for a, b in zip(back.lasso, rel.lasso, strict=True):
        np.testing.assert_array_equal(a, b)
    assert back.filters == rel.filters
    # the file is a plain npz: no pickle needed
    with np.load(p, allow_pickle=False) as f:
        assert "W" in f.files


def test_load_refuses_another_network(tmp_path, net, rel):
    apply_fn, _ = net
    p = rel.save(tmp_path / "rel.npz")
    info = apply_fn.info
    conv2 = info.geometry["conv2"]._replace(channels=7)
    wider = _with_info(info._replace(geometry={**info.geometry, "conv2": conv2}))
    with pytest.raises(ValueError, match=r"'conv2' has 7 channels.*but 6"):
        Relevance.load(p, apply_fn=wider)
    with pytest.raises(ValueError, match="'conv2' has 7 channels"):
        Relevance.load(p).attribution(apply_fn=wider)
    with pytest.raises(ValueError, match="apply_fn is required"):
        Relevance.load(p).attribution()
    with pytest.raises(ValueError, match="the network has 3 classes"):
        Relevance.load(p, apply_fn=_with_info(info._replace(num_classes=3)))
    with pytest.raises(ValueError, match="conv layer 'conv2'"):
        Relevance.load(p, apply_fn=_with_info(info._replace(conv_layers=("conv1", "conv3"))))

    # a plain apply_fn (no .info) is checked with params by an abstract forward pass
    def plain(params, x, record=None):
        b = x.shape[0]
        spikes = {"conv1": jnp.zeros((b, 24, 24, 5)), "conv2": jnp.zeros((b, 8, 8, 6))}
        return SNNOutput(jnp.zeros((b, 10)), spikes)

    with pytest.raises(ValueError, match="'conv1' has 5 channels"):
        Relevance.load(p, apply_fn=plain, params={})
    (tmp_path / "junk.npz").write_bytes(b"not a file")
    with pytest.raises(ValueError, match="not a svebi_jax Relevance file"):
        Relevance.load(tmp_path / "junk.npz")
    np.savez(tmp_path / "other.npz", W=np.zeros((2, 2)))
    with pytest.raises(ValueError, match="not a svebi_jax Relevance file"):
        Relevance.load(tmp_path / "other.npz")


def _with_info(info):
    """An apply_fn that only carries ``info`` (the check reads nothing else)."""

    def fn(params, x, **kw):
        raise AssertionError("not called")

    fn.info = info
    return fn


def test_mu_path(net, images, old, rel):
    apply_fn, params = net
    resp, _ = old
    mus = [0.25, 0.5, 1.0]
    path = fit_relevance(apply_fn, params, resp, mu=mus)
    ref = sv.mu_lasso(resp.X, resp.L, np.asarray(mus))
    assert path.is_path and path.W.shape == (3, resp.index.num_filters, 10)
    np.testing.assert_array_equal(path.W, np.asarray(ref.W))
    assert path.masks["conv1"].shape == (3, 10, 4)
    assert path.filters[1] == sv.relevant_filters(ref.W[1], resp.index)
    one = path.at(0.5)
    assert not one.is_path and one.mu == 0.5
    np.testing.assert_array_equal(one.W, np.asarray(ref.W[1]))
    with pytest.raises(ValueError, match=r"select one with \.at\(mu\)"):
        path.attribution()
    with pytest.raises(ValueError, match=r"mu must be one of the path's values"):
        path.at(0.3)
    with pytest.raises(ValueError, match="path must be a mu-path"):
        rel.attribution(options=attribution.SVEBIOptions(empty_class="smallest_mu"))


@pytest.mark.slow  # two compilations of the SVEBI maps
def test_smallest_mu_fallback_takes_the_path(net, images, old, rel):
    apply_fn, params = net
    path = fit_relevance(apply_fn, params, old[0], mu=[0.25, 0.5, 1.0])
    opts = attribution.SVEBIOptions(empty_class="smallest_mu")
    x = jnp.asarray(images[:2])
    got = rel.attribution(options=opts, path=path)(params, x, None)
    want = attribution.svebi(apply_fn, rel.masks, options=opts, mask_path=path.masks)(
        params, x, None
    )
    np.testing.assert_array_equal(got, want)


def test_empty_data_is_refused_naming_the_images(net):
    apply_fn, params = net
    empty = np.zeros((0, 28, 28, 1), np.float32)
    with pytest.raises(ValueError, match=r"images: .*N = 0"):
        fit_relevance(apply_fn, params, empty)
    with pytest.raises(ValueError, match=r"images: .*N = 0"):
        sv.compute_responses(apply_fn, params, empty)
    with pytest.raises(ValueError, match=r"images must hold at least one image"):
        sv.compute_responses(apply_fn, params, iter(()))


def test_bad_weights_refused(rel):
    with pytest.raises(ValueError, match="NaN or inf"):
        dataclasses.replace(rel, W=np.full_like(rel.W, np.nan))
    with pytest.raises(ValueError, match=r"W must be \[m, C\] with m = 10"):
        dataclasses.replace(rel, W=np.zeros((3, 10), np.float32))

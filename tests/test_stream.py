"""Tests for svebi_jax.data.stream (grain pipeline) and svebi_jax.data.sample_photos."""

from __future__ import annotations

import gzip
import io
import json
import logging
import os
import pathlib
import struct
import subprocess
import sys
import textwrap
import types

import jax
import numpy as np
import pytest

from svebi_jax import data
from svebi_jax.data import (
    ArraySource,
    Batch,
    Dataset,
    FolderSource,
    IdxSource,
    ImageSource,
    SyntheticSource,
    UnreadableImageError,
    as_source,
    open_stream,
    prefetch_to_device,
)

REPO = pathlib.Path(__file__).resolve().parents[1]

# --------------------------------------------------------------------------------------------
# helpers


def _collect(it) -> Batch:
    """Concatenates every batch of an iterator into one Batch."""
    batches = list(it)
    return Batch(*(np.concatenate(parts) for parts in zip(*batches, strict=True)))


def _synthetic_reference(index: np.ndarray, shape) -> np.ndarray:
    """Independent closed form of SyntheticSource: ((7h + 13w + 29c + i) mod 256) / 255."""
    h, w, c = np.indices(shape)
    pixels = (7 * h + 13 * w + 29 * c)[None] + index[:, None, None, None]
    return (pixels % 256).astype(np.float32) / np.float32(255.0)


def _jpeg_bytes(array: np.ndarray, quality: int = 90) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _png_bytes(array: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _triangle_downscale(x: np.ndarray, k: int) -> np.ndarray:
    """Independent numpy model of an antialiased bilinear k-fold reduction (both axes).

    Output pixel i has centre (i + 1/2)·k in input coordinates; input pixel j (centre j + 1/2)
    gets weight max(0, 1 - |d|/k), normalized over the pixels inside the image.
    """

    def along(a: np.ndarray, axis: int) -> np.ndarray:
        n = a.shape[axis]
        m = n // k
        centres = (np.arange(m) + 0.5) * k
        d = np.abs((np.arange(n) + 0.5)[None, :] - centres[:, None])
        w = np.maximum(0.0, 1.0 - d / k)
        w /= w.sum(axis=1, keepdims=True)
        return np.moveaxis(np.tensordot(w, np.moveaxis(a, axis, 0), axes=1), 0, axis)

    return along(along(x.astype(np.float64), 0), 1)


@pytest.fixture()
def photo_root(tmp_path):
    """root/{bird,cat,dog}: 3 + 4 + 2 small RGB JPEGs of different sizes, plus a text file."""
    rng = np.random.default_rng(0)
    root = tmp_path / "photos"
    sizes = {"bird": [(30, 40), (24, 24), (50, 20)], "cat": [(16, 16)] * 4, "dog": [(40, 30)] * 2}
    for name, shapes in sizes.items():
        (root / name).mkdir(parents=True)
        for k, (h, w) in enumerate(shapes):
            pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            (root / name / f"{k:02d}.jpg").write_bytes(_jpeg_bytes(pixels))
    (root / "cat" / "README.txt").write_text("not an image")
    return root


# --------------------------------------------------------------------------------------------
# determinism, coverage, padding


def test_every_item_once_per_epoch_with_padding_and_closed_form_pixels():
    src = SyntheticSource(23, image_shape=(4, 5, 3), num_classes=4)
    it = src.batches(5, seed=7, epoch=0, shard=(0, 1))
    assert len(it) == 5 == src.num_batches(5, shard=(0, 1))
    b = _collect(it)
    assert b.images.shape == (25, 4, 5, 3) and b.images.dtype == np.float32
    assert b.labels.dtype == np.int32 and b.mask.dtype == bool and b.index.dtype == np.int32
    valid = b.index[b.mask]
    np.testing.assert_array_equal(np.sort(valid), np.arange(23))  # each item exactly once
    assert not np.array_equal(valid, np.arange(23))  # shuffled
    # two padded rows at the very end: mask False, index -1, label 0, zero images
    np.testing.assert_array_equal(b.mask, np.arange(25) < 23)
    np.testing.assert_array_equal(b.index[23:], [-1, -1])
    np.testing.assert_array_equal(b.labels[23:], [0, 0])
    assert not b.images[23:].any()
    np.testing.assert_array_equal(b.images[:23], _synthetic_reference(valid, (4, 5, 3)))
    np.testing.assert_array_equal(b.labels[:23], valid % 4)


def test_same_seed_same_order_new_epoch_new_order_no_seed_source_order():
    src = SyntheticSource(40, image_shape=(2, 2, 1))
    order = lambda **kw: _collect(src.batches(8, shard=(0, 1), **kw)).index  # noqa: E731
    a, b = order(seed=3, epoch=0), order(seed=3, epoch=0)
    np.testing.assert_array_equal(a, b)
    e1, s4 = order(seed=3, epoch=1), order(seed=4, epoch=0)
    assert not np.array_equal(a, e1) and not np.array_equal(a, s4)
    np.testing.assert_array_equal(np.sort(e1), np.arange(40))
    np.testing.assert_array_equal(order(seed=None, epoch=5), np.arange(40))
    # num_epochs=k yields exactly the k separate epochs, back to back
    it = src.batches(8, seed=3, epoch=0, num_epochs=2, shard=(0, 1))
    assert len(it) == 10 and it.steps_per_epoch == 5
    np.testing.assert_array_equal(_collect(it).index, np.concatenate([a, e1]))
    # resuming at batch 7 (epoch 1, step 2) yields exactly the rest of that pass
    rest = src.batches(8, seed=3, epoch=0, num_epochs=2, start=7, shard=(0, 1))
    assert len(rest) == 3
    np.testing.assert_array_equal(_collect(rest).index, e1[16:])
    assert len(src.batches(8, seed=3, num_epochs=2, start=10, shard=(0, 1))) == 0
    with pytest.raises(ValueError, match="start must be at most"):
        src.batches(8, seed=3, start=6, shard=(0, 1))


def test_order_is_the_same_in_a_fresh_process():
    """Same seed -> same order on every run: a new interpreter (other hash seed) agrees, and
    the first positions are pinned (a changed shuffle would silently change published runs)."""
    src = SyntheticSource(1000, image_shape=(1, 1, 1))
    here = _collect(src.batches(100, seed=0, epoch=2, shard=(0, 1))).index
    code = textwrap.dedent(
        """
        import json
        from svebi_jax.data import SyntheticSource
        it = SyntheticSource(1000, image_shape=(1, 1, 1)).batches(100, seed=0, epoch=2,
                                                                    shard=(0, 1))
        print(json.dumps([int(i) for b in it for i in b.index]))
        """
    )
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONHASHSEED="123", JAX_PLATFORMS="cpu")
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    np.testing.assert_array_equal(json.loads(out.stdout.strip().splitlines()[-1]), here)
    np.testing.assert_array_equal(here[:8], [595, 375, 591, 566, 321, 663, 122, 345])


def test_drop_remainder_keeps_full_batches_only():
    src = SyntheticSource(23, image_shape=(2, 2, 1))
    b = _collect(src.batches(5, seed=1, drop_remainder=True, shard=(0, 1)))
    assert b.mask.all() and len(b.index) == 20 and len(set(b.index.tolist())) == 20
    with pytest.raises(ValueError, match="no batch"):
        src.batches(24, drop_remainder=True, shard=(0, 1))


# --------------------------------------------------------------------------------------------
# per-host sharding


@pytest.mark.parametrize("hosts", [1, 2, 3])
def test_hosts_partition_the_data_and_concatenate_to_the_global_batch(hosts):
    n, b = 29, 4
    src = SyntheticSource(n, image_shape=(2, 2, 1), num_classes=3)
    per_host = [list(src.batches(b, seed=5, epoch=1, shard=(h, hosts))) for h in range(hosts)]
    steps = -(-n // (b * hosts))
    assert all(len(batches) == steps for batches in per_host)  # same step count everywhere
    indices = np.concatenate([bb.index[bb.mask] for batches in per_host for bb in batches])
    np.testing.assert_array_equal(np.sort(indices), np.arange(n))  # disjoint, complete
    single = list(src.batches(b * hosts, seed=5, epoch=1, shard=(0, 1)))
    for s in range(steps):
        glued = np.concatenate([per_host[h][s].index for h in range(hosts)])
        np.testing.assert_array_equal(glued, single[s].index)
        glued_images = np.concatenate([per_host[h][s].images for h in range(hosts)])
        np.testing.assert_array_equal(glued_images, single[s].images)


def test_shard_forms():
    import grain

    src = SyntheticSource(10, image_shape=(1, 1, 1))
    ref = _collect(src.batches(2, seed=0, shard=(1, 2))).index
    opts = grain.sharding.ShardOptions(shard_index=1, shard_count=2)
    np.testing.assert_array_equal(_collect(src.batches(2, seed=0, shard=opts)).index, ref)
    # default: this JAX process (index 0 of 1 here)
    assert (jax.process_index(), jax.process_count()) == (0, 1)
    np.testing.assert_array_equal(
        _collect(src.batches(2, seed=0)).index, _collect(src.batches(2, seed=0, shard=(0, 1))).index
    )
    for bad in [(2, 2), (0, 0), (-1, 2), "host0", (0, 1, 2)]:
        with pytest.raises(ValueError, match="shard"):
            src.batches(2, shard=bad)


# --------------------------------------------------------------------------------------------
# folder source: decoding, resizing, ordering


def test_folder_source_lists_like_the_in_memory_loader(photo_root, caplog):
    with caplog.at_level(logging.INFO, logger="svebi_jax.data"):
        src = FolderSource(photo_root, image_size=8)
    assert src.class_names == ("bird", "cat", "dog") and src.num_classes == 3
    assert len(src) == 9 and src.image_shape == (8, 8, 3) and src.ignored_files == 1
    assert "ignored 1 non-image file" in caplog.text
    np.testing.assert_array_equal(src.labels, [0, 0, 0, 1, 1, 1, 1, 2, 2])
    assert src.describe(3) == str(photo_root / "cat" / "00.jpg")
    ds = data.load_image_folder(photo_root, image_size=8)
    b = _collect(src.batches(4, shard=(0, 1)))
    np.testing.assert_array_equal(b.images[b.mask], ds.images)  # bit-identical
    np.testing.assert_array_equal(b.labels[b.mask], ds.labels)
    np.testing.assert_array_equal(src.to_dataset().images, ds.images)


def test_folder_decodes_jpeg_like_pil(photo_root):
    from PIL import Image

    src = FolderSource(photo_root, image_size=(6, 10))
    batch = src.gather([0, 2, 8])
    assert batch.images.shape == (3, 6, 10, 3) and batch.mask.all()
    for row, i in enumerate([0, 2, 8]):
        with Image.open(src.files[i]) as im:
            ref = np.asarray(im.convert("RGB").resize((10, 6), Image.Resampling.BILINEAR))
        np.testing.assert_array_equal(batch.images[row], ref.astype(np.float32) / 255)
    np.testing.assert_array_equal(batch.labels, [0, 0, 2])


def test_folder_resize_matches_an_independent_triangle_filter(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (24, 36, 3), dtype=np.uint8)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.png").write_bytes(_png_bytes(x))  # lossless
    for k in (2, 3):
        got = FolderSource(tmp_path, image_size=(24 // k, 36 // k)).example(0)[0] * 255
        ref = _triangle_downscale(x, k)
        assert np.abs(got - ref).max() <= 1.0, k  # Pillow rounds its two passes to uint8


def test_folder_center_crop_and_grayscale(tmp_path):
    x = np.zeros((10, 30, 3), np.uint8)
    x[:, 10:20] = (200, 100, 50)  # the middle third
    gray = np.full((5, 5), 77, np.uint8)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "wide.png").write_bytes(_png_bytes(x))
    (tmp_path / "a" / "zgray.png").write_bytes(_png_bytes(gray))
    src = FolderSource(tmp_path, image_size=10, resize="center_crop")
    np.testing.assert_array_equal(src.example(0)[0] * 255, x[:, 10:20])  # no resize, centre
    np.testing.assert_allclose(src.example(1)[0], 77 / 255)  # gray -> RGB, 5 -> 10 constant
    with pytest.raises(ValueError, match="resize must be"):
        FolderSource(tmp_path, image_size=10, resize="fit")


def test_folder_draft_mode_is_close(tmp_path):
    from PIL import Image

    yy, xx = np.mgrid[0:480, 0:640]
    photo = np.stack([xx % 256, yy % 256, (xx + yy) % 256], -1).astype(np.uint8)
    (tmp_path / "a").mkdir()
    Image.fromarray(photo).save(tmp_path / "a" / "big.jpg", quality=95)
    exact = FolderSource(tmp_path, image_size=64).example(0)[0]
    fast = FolderSource(tmp_path, image_size=64, draft=True).example(0)[0]
    assert 0 < np.abs(exact - fast).mean() < 0.03


# --------------------------------------------------------------------------------------------
# bad data


def test_corrupt_and_truncated_jpegs_are_masked_and_reported(photo_root, caplog):
    good = (photo_root / "bird" / "00.jpg").read_bytes()
    truncated = photo_root / "cat" / "01.jpg"
    whole = _jpeg_bytes(np.random.default_rng(9).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    truncated.write_bytes(whole[: int(len(whole) * 0.6)])  # cut inside the scan data
    garbage = photo_root / "dog" / "zz.jpg"
    garbage.write_bytes(b"this is not a jpeg" * 10)
    empty = photo_root / "bird" / "empty.JPG"
    empty.write_bytes(b"")
    src = FolderSource(photo_root, image_size=8)
    bad = {str(truncated), str(garbage), str(empty)}
    bad_index = {i for i in range(len(src)) if src.files[i] in bad}
    assert len(src) == 11 and len(bad_index) == 3
    with caplog.at_level(logging.WARNING, logger="svebi_jax.data"):
        it = src.batches(4, seed=0, shard=(0, 1))
        b = _collect(it)
    skipped = {s.path for s in it.skipped}
    assert skipped == bad and set(src.unreadable) == bad
    for path in bad:
        assert path in caplog.text
    assert "3 unreadable image(s) skipped" in caplog.text
    reasons = {s.path: s.reason for s in it.skipped}
    assert reasons[str(truncated)].startswith("OSError: image file is truncated")
    assert reasons[str(garbage)].startswith("UnidentifiedImageError")
    # skipped rows keep their slot: mask False, index = the file, zero image
    rows = ~b.mask & (b.index >= 0)
    assert set(b.index[rows].tolist()) == bad_index and not b.images[rows].any()
    assert set(b.index[b.mask].tolist()) == set(range(len(src))) - bad_index
    # deterministic composition: the same run again gives the same batches
    again = _collect(src.batches(4, seed=0, shard=(0, 1)))
    np.testing.assert_array_equal(again.index, b.index)
    np.testing.assert_array_equal(again.mask, b.mask)
    assert good == (photo_root / "bird" / "00.jpg").read_bytes()
    # fail clearly instead
    with pytest.raises(UnreadableImageError, match="cannot decode image file .*(zz|01|empty)"):
        list(src.batches(4, seed=0, shard=(0, 1), on_error="raise"))
    with pytest.raises(UnreadableImageError, match=str(garbage)):
        src.gather([0, src.files.index(str(garbage))])
    with pytest.raises(ValueError, match="on_error"):
        src.batches(4, on_error="ignore")


def test_workers_give_the_same_batches_and_report_in_the_main_process(photo_root):
    garbage = photo_root / "dog" / "zz.jpg"
    garbage.write_bytes(b"\xff\xd8\xff not really")
    src = FolderSource(photo_root, image_size=8)
    kw = dict(seed=2, epoch=1, shard=(0, 1))
    ref = _collect(src.batches(3, **kw))
    it = src.batches(3, num_workers=2, prefetch=1, normalize="imagenet", **kw)
    got = _collect(it)
    np.testing.assert_array_equal(got.index, ref.index)
    np.testing.assert_array_equal(got.mask, ref.mask)
    from svebi_jax.models.vgg import imagenet_normalize  # the model's own normalization

    normalized = np.asarray(imagenet_normalize(jax.numpy.asarray(ref.images)))
    expected = np.where(ref.mask[:, None, None, None], normalized, 0.0)
    np.testing.assert_allclose(got.images, expected, rtol=1e-6, atol=1e-6)
    assert [s.path for s in it.skipped] == [str(garbage)]


def test_empty_class_folder_and_empty_root_name_the_folder(tmp_path, photo_root):
    (photo_root / "eel").mkdir()
    with pytest.raises(ValueError, match=r"class directory '.*eel' holds no"):
        FolderSource(photo_root)
    (photo_root / "eel" / "notes.txt").write_text("only text")  # non-images do not count
    with pytest.raises(ValueError, match=r"eel' holds no"):
        FolderSource(photo_root)
    empty = tmp_path / "empty_root"
    empty.mkdir()
    with pytest.raises(ValueError, match=r"empty_root' has no class sub-directories"):
        FolderSource(empty)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        FolderSource(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="image_size"):
        FolderSource(photo_root, image_size=0)


# --------------------------------------------------------------------------------------------
# IDX, in-memory and tfds sources agree with the existing loaders


def _write_idx(path: pathlib.Path, array: np.ndarray, code: int, *, gz: bool) -> None:
    header = struct.pack(">BBBB", 0, 0, code, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    path.write_bytes(gzip.compress(payload) if gz else payload)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_source_equals_load_idx_dir(tmp_path, gz):
    import cloudpickle

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (13, 5, 4), dtype=np.uint8)
    labels = rng.integers(0, 7, 13).astype(np.uint8)
    suffix = ".gz" if gz else ""
    _write_idx(tmp_path / f"t10k-images-idx3-ubyte{suffix}", images, 0x08, gz=gz)
    _write_idx(tmp_path / f"t10k-labels-idx1-ubyte{suffix}", labels, 0x08, gz=gz)
    src = IdxSource(tmp_path, "test", num_classes=7)
    assert src._mapped is (not gz) and src.image_shape == (5, 4, 1) and len(src) == 13
    ref = data.load_idx_dir(tmp_path, "test", num_classes=7)
    mem = src.to_dataset(batch_size=4)
    np.testing.assert_array_equal(mem.images, ref.images)
    np.testing.assert_array_equal(mem.labels, ref.labels)
    # travels to worker processes (memory maps are re-opened there)
    clone = cloudpickle.loads(cloudpickle.dumps(src))
    np.testing.assert_array_equal(clone.example(12)[0], ref.images[12])
    with pytest.raises(ValueError, match=r"outside \[0, num_classes=3\)"):
        IdxSource(tmp_path, "test", num_classes=3)


def test_idx_source_on_the_real_mnist_test_set(shared_mnist_dir):
    src = open_stream(f"idx:{shared_mnist_dir}", split="test")
    ref = data.load_idx_dir(shared_mnist_dir, "test")
    assert len(src) == 10000 and src.num_classes == 10
    got = src.gather(np.arange(0, 10000, 997))
    np.testing.assert_array_equal(got.images, ref.images[::997])
    np.testing.assert_array_equal(got.labels, ref.labels[::997])


def test_array_source_agrees_with_dataset_helpers():
    rng = np.random.default_rng(0)
    ds = Dataset(rng.random((17, 3, 3, 1)), rng.integers(0, 4, 17), 4, "toy")
    src = as_source(ds)
    assert isinstance(src, ArraySource) and as_source(src) is src
    b = _collect(src.batches(5, shard=(0, 1)))
    np.testing.assert_array_equal(b.images[b.mask], ds.images)
    np.testing.assert_array_equal(b.labels[b.mask], ds.labels)
    # split and subset take the same examples as data.split / data.subset
    train, test = src.split(0.3, seed=4)
    ref_train, ref_test = data.split(ds, 0.3, seed=4)
    np.testing.assert_array_equal(train.to_dataset().images, ref_train.images)
    np.testing.assert_array_equal(test.to_dataset().labels, ref_test.labels)
    assert train.name == "toy/train"
    np.testing.assert_array_equal(
        src.subset(6, seed=2).to_dataset().images, data.subset(ds, 6, seed=2).images
    )
    with pytest.raises(TypeError, match="Dataset or ImageSource"):
        as_source(ds.images)


def test_stratified_split_keeps_class_proportions():
    labels = np.repeat(np.arange(3), [10, 20, 5])
    ds = Dataset(np.zeros((35, 1, 1, 1)), labels, 3, "s")
    src = ArraySource(ds)
    train, test = src.split(0.2, seed=0, stratify=True)
    np.testing.assert_array_equal(np.bincount(test.labels, minlength=3), [2, 4, 1])
    np.testing.assert_array_equal(np.bincount(train.labels, minlength=3), [8, 16, 4])
    t_idx, s_idx = train.indices, test.indices
    assert train.parent is src
    assert set(t_idx) | set(s_idx) == set(range(35)) and not set(t_idx) & set(s_idx)
    again = src.split(0.2, seed=0, stratify=True)[1].indices
    np.testing.assert_array_equal(again, s_idx)
    assert not np.array_equal(src.split(0.2, seed=1, stratify=True)[1].indices, s_idx)


class _FakeTfdsSource:
    """Stands in for tfds.data_source(...): dict examples, dataset_info with features."""

    def __init__(self, images, labels, image_shape):
        self.images, self.labels = images, labels
        label = types.SimpleNamespace(num_classes=3, names=["a", "b", "c"])
        self.dataset_info = types.SimpleNamespace(
            supervised_keys=("image", "label"),
            features={"image": types.SimpleNamespace(shape=image_shape), "label": label},
        )

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {"image": self.images[i], "label": np.int64(self.labels[i])}


def test_tfds_source_with_a_mock(monkeypatch, tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (7, 6, 6, 1), dtype=np.uint8)
    labels = rng.integers(0, 3, 7)
    calls = []

    def data_source(name, *, split, data_dir, download):
        calls.append((name, split, data_dir, download))
        return _FakeTfdsSource(images, labels, (6, 6, 1))

    fake = types.ModuleType("tensorflow_datasets")
    fake.data_source = data_source
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake)
    src = open_stream("tfds:fake_mnist", split="train[:70%]", data_dir=tmp_path)
    assert calls == [("fake_mnist", "train[:70%]", os.fspath(tmp_path), True)]
    assert src.name == "tfds:fake_mnist/train[:70%]" and src.class_names == ("a", "b", "c")
    assert src.image_shape == (6, 6, 1) and src.labels is None
    b = _collect(src.batches(3, shard=(0, 1)))
    np.testing.assert_array_equal(b.images[b.mask], images.astype(np.float32) / 255)
    np.testing.assert_array_equal(b.labels[b.mask], labels)
    # resized on the fly like a folder image; variable-size images need image_size
    small = open_stream("tfds:fake_mnist", split="test", image_size=3)
    np.testing.assert_array_equal(
        small.example(0)[0] * 255, data.folder.resize_image(images[0], 3).astype(np.float32)
    )
    fake.data_source = lambda name, **kw: _FakeTfdsSource(images, labels, (None, None, 1))
    with pytest.raises(ValueError, match="pass image_size"):
        open_stream("tfds:varsize")
    with pytest.raises(ValueError, match="needs labels"):
        small.split(0.5, seed=0, stratify=True)
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    with pytest.raises(ImportError, match=r"TfdsSource needs tensorflow-datasets.*\[tfds\]"):
        open_stream("tfds:mnist")


# --------------------------------------------------------------------------------------------
# spec strings, arguments, device prefetch


def test_open_stream_specs(photo_root):
    src = open_stream(f"folder:{photo_root.name}", data_dir=photo_root.parent)
    assert isinstance(src, FolderSource) and src.image_shape == (224, 224, 3)
    assert open_stream(f"folder:{photo_root}", image_size=16).image_shape == (16, 16, 3)
    with pytest.raises(ValueError, match="split must be 'train'"):
        open_stream(f"folder:{photo_root}", split="test")
    for bad in ["mnist", "folder:", "cifar:10"]:
        with pytest.raises(ValueError, match="spec"):
            open_stream(bad)


def test_open_stream_mnist5k_is_in_memory():
    src = open_stream("mnist-5k")
    assert isinstance(src, ArraySource) and len(src) == 5000 and src.image_shape == (28, 28, 1)
    with pytest.raises(ValueError, match="not resized"):
        open_stream("mnist-5k", image_size=32)


def test_argument_errors():
    src = SyntheticSource(10, image_shape=(2, 2, 3))
    for kwargs, match in [
        (dict(batch_size=0), "batch_size"),
        (dict(batch_size=2, epoch=-1), "epoch"),
        (dict(batch_size=2, num_epochs=0), "num_epochs"),
        (dict(batch_size=2, num_workers=-1), "num_workers"),
        (dict(batch_size=2, seed=-3), "seed"),
        (dict(batch_size=2, normalize="cifar"), "normalize"),
        (dict(batch_size=2, normalize=((0.5, 0.5), 1.0)), r"\[C\]=\[3\]"),
        (dict(batch_size=2, normalize=(0.5, 0.0)), "std must be positive"),
    ]:
        with pytest.raises(ValueError, match=match):
            src.batches(shard=(0, 1), **kwargs)
    with pytest.raises(IndexError):
        src.example(10)
    with pytest.raises(ValueError, match="indices"):
        src.take([0, 10])
    assert isinstance(src, ImageSource) and "SyntheticSource" in repr(src)


def test_prefetch_to_device_keeps_values_and_sharding():
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    src = SyntheticSource(12, image_shape=(2, 2, 1))
    host = list(src.batches(4, seed=0, shard=(0, 1)))
    mesh = Mesh(np.array(jax.devices()[:1]), ("data",))
    sharding = NamedSharding(mesh, PartitionSpec("data"))
    on_device = list(prefetch_to_device(iter(host), size=2, sharding=sharding))
    assert len(on_device) == 3
    for h, d in zip(host, on_device, strict=True):
        assert isinstance(d.images, jax.Array) and d.images.sharding == sharding
        for x, y in zip(h, d, strict=True):
            np.testing.assert_array_equal(x, np.asarray(y))
    assert len(list(prefetch_to_device(host, size=5))) == 3


# --------------------------------------------------------------------------------------------
# bounded memory over a million items


_RSS_SCRIPT = """
import json
from svebi_jax.data import SyntheticSource

def status_mb(key):  # VmRSS now, VmHWM peak of this process image (ru_maxrss would include
    with open("/proc/self/status") as f:  # the parent's memory, inherited across fork+exec)
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024

src = SyntheticSource(1_000_000, image_shape=(64, 64, 3), num_classes=50)
it = src.batches(64, seed=0, epoch=3, shard=(0, 1), prefetch=2)
seen = 0
for k, batch in enumerate(it):
    seen += int(batch.mask.sum())
    if k == 50:
        start = status_mb("VmRSS")
    if k == 550:
        break
it.close()
print(json.dumps({"start_mb": start, "end_mb": status_mb("VmRSS"), "items": seen,
                  "steps": len(it), "peak_mb": status_mb("VmHWM")}))
"""


def test_a_million_items_iterate_with_bounded_rss():
    """1e6 items of 64x64x3 would be 49 GB as float32; 35k of them are streamed (551 batches)
    and the process's resident memory must not grow with them."""
    env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu")
    out = subprocess.run(
        [sys.executable, "-c", _RSS_SCRIPT], capture_output=True, text=True, env=env, check=True
    )
    m = json.loads(out.stdout.strip().splitlines()[-1])
    print(m)
    assert m["steps"] == 15625 and m["items"] == 551 * 64
    assert m["end_mb"] - m["start_mb"] < 64, m  # one batch is 3 MB; growth would be ~1.7 GB
    assert m["peak_mb"] < 2048, m


# --------------------------------------------------------------------------------------------
# the tiny real-photo dataset


def test_make_photo_folder_is_real_deterministic_and_readable(tmp_path):
    from svebi_jax.data.sample_photos import PHOTOS, load_photo, make_photo_folder

    root = make_photo_folder(tmp_path / "a", classes=4, per_class=6, size=40, seed=0)
    names = sorted(list(PHOTOS)[:4])
    assert sorted(p.name for p in root.iterdir()) == names
    src = FolderSource(root, image_size=40)
    assert len(src) == 24 and src.class_names == tuple(names)
    ds = src.to_dataset()
    np.testing.assert_array_equal(np.bincount(ds.labels), [6, 6, 6, 6])
    photo_means = np.stack([load_photo(n).reshape(-1, 3).mean(0) / 255 for n in names])
    for c in range(4):
        views = ds.images[ds.labels == c]
        # views differ from each other (crops, flips, jitter) ...
        assert np.abs(views[1:] - views[:1]).mean() > 0.05
        # ... and come from their own photograph: class-mean colour nearest its photo's
        mean = views.reshape(-1, 3).mean(0)
        dist = np.abs(photo_means - mean).max(1)
        assert dist.argmin() == c and dist[c] < 0.1, (names[c], dist)
    # same arguments -> same bytes; another seed -> other images; a class is the same in any
    # selection of classes
    again = make_photo_folder(tmp_path / "b", classes=4, per_class=6, size=40, seed=0)
    other = make_photo_folder(tmp_path / "c", classes=["rocket"], per_class=2, size=40, seed=1)
    alone = make_photo_folder(tmp_path / "d", classes=["rocket"], per_class=2, size=40, seed=0)
    f = "rocket/rocket_001.jpg"
    assert (root / f).read_bytes() == (again / f).read_bytes() == (alone / f).read_bytes()
    assert (root / f).read_bytes() != (other / f).read_bytes()
    with pytest.raises(ValueError, match="distinct names"):
        make_photo_folder(tmp_path / "e", classes=["unicorn"])
    with pytest.raises(ValueError, match="size"):
        make_photo_folder(tmp_path / "e", size=4)

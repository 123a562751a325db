"""Streaming image classification data on grain: one interface for folders, IDX, tfds, memory.

An :class:`ImageSource` is a random-access labelled image collection that is never held in
memory as a whole: ``len(source)`` items, ``source.num_classes``, ``source.class_names``,
``source.image_shape`` ``(H, W, C)``, and :meth:`ImageSource.batches`, which yields
fixed-shape :class:`Batch` es, one epoch or several::

    from svebi_jax import data

    def main():  # worker processes are spawned: keep the entry point under a main guard
        source = data.open_stream("folder:/data/AwA2/JPEGImages", image_size=224)
        train, test = source.split(0.2, seed=0)                # seeded 80/20 split
        with train.batches(8, seed=0, num_epochs=50, num_workers=8) as it:
            for step, batch in enumerate(it):                  # it.steps_per_epoch per epoch
                ...  # batch.images [8, 224, 224, 3] f32, .labels [8] i32, .mask [8] bool
        print(it.skipped)                                      # unreadable files, if any

    if __name__ == "__main__":
        main()

Sources: :class:`FolderSource` (``root/<class>/*.jpg|jpeg|png``, AwA2's layout),
:class:`IdxSource` (MNIST-style IDX files, memory-mapped), :class:`TfdsSource`
(``tfds.data_source``), :class:`ArraySource` (an in-memory :class:`~svebi_jax.data.Dataset`,
so that one interface serves both) and :class:`SyntheticSource` (a deterministic pattern of
any length, for tests and benchmarks). :func:`open_stream` builds one from the same spec
strings as :func:`svebi_jax.data.load`; :func:`as_source` turns a ``Dataset`` or a source into
a source, so a stage can accept either.

The pipeline (:meth:`ImageSource.batches`) is a grain ``MapDataset``: item ``j`` of this
host's epoch is read, decoded, resized, scaled to ``[0, 1]`` float32 (and optionally
normalized) by a pure function of ``(source, seed, epoch, j)``, batched, then read ahead by
threads (``prefetch``) and, with ``num_workers > 0``, by worker processes (grain's
``mp_prefetch``; each worker builds whole batches, delivered in order). Hence:

* **Determinism.** The order is a function of ``(seed, epoch)`` only: grain's index shuffle
  (a 4-round Feistel permutation of ``[0, N)``) with the seed ``SeedSequence([seed, epoch])``.
  The same seed and epoch give the same batches on every run, for every ``num_workers`` and
  ``prefetch``; every item appears exactly once per epoch.
* **Fixed shapes.** Every batch has ``batch_size`` rows, so a jitted step compiles once. The
  last batch is padded (``mask`` False, ``index`` -1, zero images, label 0) unless
  ``drop_remainder=True`` drops it.
* **Sharding per host.** With ``P`` hosts (``jax.process_count()``) and per-host batch ``B``,
  step ``s`` of host ``h`` holds positions ``[s·B·P + h·B, s·B·P + (h+1)·B)`` of the epoch's
  global order: the hosts' batches at one step concatenate to the global batch a single
  process with batch ``B·P`` would see. Every host gets the same number of steps,
  ``ceil(N / (B·P))`` (``floor`` with ``drop_remainder``), so collectives never deadlock;
  the hosts partition the data.
* **Unreadable files** (corrupt, truncated, not an image) are, by default, **skipped and
  reported**: the item keeps its slot with ``mask`` False (so batch composition stays
  deterministic and independent of the worker count), each path is logged once per pass on the
  ``"svebi_jax.data"`` logger, collected in :attr:`BatchIterator.skipped` and in
  :attr:`ImageSource.unreadable`. ``on_error="raise"`` fails at the first one instead,
  naming the path.
* **Bounded memory.** Nothing scales with ``N`` except the list of file names (folder) or
  the labels: the shuffle is computed per index, images are decoded on demand, and at most
  about ``(prefetch + 1) · max(1, num_workers)`` batches exist at once.

Consumers that need one compiled shape use ``mask`` to ignore padded/skipped rows, e.g. a
masked mean loss ``Σ_b m_b ℓ_b / max(1, Σ_b m_b)``.
"""

from __future__ import annotations

import abc
import collections
import itertools
import logging
import numbers
import os
import pathlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np

from svebi_jax.data.dataset import Dataset, _check_fraction, _check_seed, split_indices
from svebi_jax.data.folder import (
    UnreadableImageError,
    _check_resize,
    _check_size,
    list_image_folder,
    read_image,
    resize_image,
)
from svebi_jax.data.idx import infer_num_classes, open_idx, open_idx_split

__all__ = [
    "Batch",
    "BatchIterator",
    "Skipped",
    "ImageSource",
    "FolderSource",
    "IdxSource",
    "TfdsSource",
    "ArraySource",
    "SyntheticSource",
    "as_source",
    "open_stream",
    "prefetch_to_device",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
]

logger = logging.getLogger("svebi_jax.data")

#: torchvision's ImageNet channel statistics (``normalize="imagenet"``); the same numbers as
#: :data:`svebi_jax.models.vgg.IMAGENET_MEAN` / ``IMAGENET_STD``.
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


class Batch(NamedTuple):
    """One fixed-shape batch (a pytree: ``jax.device_put`` and ``jax.tree.map`` work on it).

    Attributes:
      images: ``[B, H, W, C]`` float32, in ``[0, 1]`` unless ``normalize`` was given. Rows with
        ``mask`` False hold zeros.
      labels: ``[B]`` int32 in ``[0, num_classes)`` (0 where ``mask`` is False).
      mask: ``[B]`` bool, True for a real, decoded item.
      index: ``[B]`` int32 position of the item in its source (``-1`` for padding). A row with
        ``mask`` False and ``index >= 0`` is an unreadable file that was skipped.
    """

    images: np.ndarray
    labels: np.ndarray
    mask: np.ndarray
    index: np.ndarray


class Skipped(NamedTuple):
    """An item that could not be read and was masked out.

    Attributes:
      index: Position in the source.
      path: The file (or another description of the item).
      reason: The decoder's message.
    """

    index: int
    path: str
    reason: str


# --------------------------------------------------------------------------------------------
# argument checks


def _positive_int(value: Any, arg: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{arg} must be a positive int, got {value!r}")
    return int(value)


def _non_negative_int(value: Any, arg: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{arg} must be a non-negative int, got {value!r}")
    return int(value)


def _check_on_error(on_error: Any) -> str:
    if on_error not in ("skip", "raise"):
        raise ValueError(f"on_error must be 'skip' or 'raise', got {on_error!r}")
    return on_error


def _resolve_shard(shard: Any) -> tuple[int, int]:
    """``(index, count)`` from ``None`` (this JAX process), a pair, or grain ``ShardOptions``."""
    if shard is None:
        import jax

        return int(jax.process_index()), int(jax.process_count())
    if hasattr(shard, "shard_index") and hasattr(shard, "shard_count"):
        shard = (shard.shard_index, shard.shard_count)
    if not isinstance(shard, tuple) or len(shard) != 2:
        raise ValueError(
            "shard must be None (this JAX process), a pair (index, count) or "
            f"grain.sharding.ShardOptions, got {shard!r}"
        )
    index = _non_negative_int(shard[0], "shard index")
    count = _positive_int(shard[1], "shard count")
    if index >= count:
        raise ValueError(f"shard index must be in [0, count={count}), got {index}")
    return index, count


def _normalization(normalize: Any, channels: int) -> tuple[np.ndarray, np.ndarray] | None:
    if normalize is None:
        return None
    if isinstance(normalize, str):
        if normalize != "imagenet":
            raise ValueError(
                f"normalize must be None, 'imagenet' or a pair (mean, std), got {normalize!r}"
            )
        normalize = (IMAGENET_MEAN, IMAGENET_STD)
    if not isinstance(normalize, tuple) or len(normalize) != 2:
        raise ValueError(
            f"normalize must be None, 'imagenet' or a pair (mean, std), got {normalize!r}"
        )
    out = []
    for arg, value in zip(("mean", "std"), normalize, strict=True):
        arr = np.asarray(value, dtype=np.float32).reshape(-1)
        if arr.shape[0] not in (1, channels) or not np.all(np.isfinite(arr)):
            raise ValueError(
                f"normalize {arg} must be finite, a scalar or [C]=[{channels}] values, "
                f"got {value!r}"
            )
        if arg == "std" and not np.all(arr > 0):
            raise ValueError(f"normalize std must be positive, got {value!r}")
        out.append(np.broadcast_to(arr, (channels,)).copy())
    return out[0], out[1]


def _to_unit_float(image: np.ndarray, where: str) -> np.ndarray:
    if image.dtype == np.uint8:
        return image.astype(np.float32) / np.float32(255.0)
    if np.issubdtype(image.dtype, np.floating):
        return image.astype(np.float32, copy=False)
    raise TypeError(f"{where} has image dtype {image.dtype}; expected uint8 or float in [0, 1]")


def _absl_flags_parsed() -> None:
    """Marks absl flags parsed (with their defaults) unless a program already parsed them.

    grain 0.2.18's ``mp_prefetch`` reads an absl flag and raises ``UnparsedFlagAccessError``
    in programs that are not started by ``absl.app.run`` (scripts, notebooks, pytest).
    """
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


def _epoch_seed(seed: int, epoch: int) -> int:
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1, np.uint32)[0])


# --------------------------------------------------------------------------------------------
# the per-item function that runs in the workers


class _ReadItem:
    """Maps this host's item number ``j`` to a decoded example (picklable; runs in workers).

    ``j = (e·S + s)·B + k`` (epoch offset ``e``, step ``s`` of ``S``, row ``k``) reads global
    position ``g = s·B·P + h·B + k`` of epoch ``epoch + e``'s order (identity without a
    seed); ``g >= N`` is padding.
    """

    def __init__(self, source, seed, epoch, steps, batch_size, shard, normalize, on_error):
        self.source = source
        self.seed = seed
        self.epoch = epoch
        self.steps = steps
        self.batch_size = batch_size
        self.shard_index, self.shard_count = shard
        self.normalize = normalize
        self.on_error = on_error
        self.num_items = len(source)
        self.image_shape = source.image_shape
        self._orders: dict[int, Any] = {}

    def _order(self, epoch: int):
        order = self._orders.get(epoch)
        if order is None:  # reader threads may race here: each builds the same lazy order
            import grain

            order = grain.MapDataset.range(self.num_items).shuffle(
                seed=_epoch_seed(self.seed, epoch)
            )
            self._orders = {epoch: order}  # one epoch at a time: O(1) memory
        return order

    def _blank(self, index: int) -> dict[str, np.ndarray]:
        return {
            "image": np.zeros(self.image_shape, np.float32),
            "label": np.int32(0),
            "mask": np.bool_(False),
            "index": np.int32(index),
        }

    def __call__(self, j: int) -> dict[str, np.ndarray]:
        offset, rest = divmod(int(j), self.steps * self.batch_size)
        step, row = divmod(rest, self.batch_size)
        g = (step * self.shard_count + self.shard_index) * self.batch_size + row
        if g >= self.num_items:
            return self._blank(-1)
        i = g if self.seed is None else int(self._order(self.epoch + offset)[g])
        try:
            pixels, label = self.source.example(i)
        except UnreadableImageError:
            if self.on_error == "raise":
                raise
            return self._blank(i)
        if self.normalize is not None:
            pixels = (pixels - self.normalize[0]) / self.normalize[1]
        return {
            "image": pixels,
            "label": np.int32(label),
            "mask": np.bool_(True),
            "index": np.int32(i),
        }


# --------------------------------------------------------------------------------------------
# the iterator handed to consumers


class BatchIterator(Iterator[Batch]):
    """Iterator over :class:`Batch` es on one host (from :meth:`ImageSource.batches`).

    ``len(it)`` is the number of batches, ``it.steps_per_epoch`` those of one epoch.
    Unreadable items met so far are in :attr:`skipped` (and in the source's
    :attr:`ImageSource.unreadable`). Use it as a context manager, or call :meth:`close`, to
    stop worker processes early; an exhausted iterator closes itself.
    """

    def __init__(self, source: ImageSource, dataset, num_batches: int, steps: int) -> None:
        self._source = source
        self._num_batches = num_batches
        self.steps_per_epoch = steps
        self._dataset = dataset
        self._it = None
        self._done = 0
        self.skipped: list[Skipped] = []

    def __len__(self) -> int:
        return self._num_batches

    def __iter__(self) -> BatchIterator:
        return self

    def __next__(self) -> Batch:
        if self._done >= self._num_batches:
            self.close()
            raise StopIteration
        if self._it is None:
            self._it = iter(self._dataset)
        raw = next(self._it)
        self._done += 1
        # copies free grain's shared-memory blocks at once (a view would pin them)
        batch = Batch(
            images=np.array(raw["image"], dtype=np.float32),
            labels=np.array(raw["label"], dtype=np.int32),
            mask=np.array(raw["mask"], dtype=bool),
            index=np.array(raw["index"], dtype=np.int32),
        )
        del raw
        for i in batch.index[~batch.mask & (batch.index >= 0)]:
            self._report(int(i))
        if self._done == self._num_batches:
            self.close()
            if self.skipped:
                logger.warning(
                    "%s: %d unreadable image(s) skipped (masked out) in this pass; paths in "
                    "BatchIterator.skipped and ImageSource.unreadable",
                    self._source.name,
                    len(self.skipped),
                )
        return batch

    def _report(self, i: int) -> None:
        path = self._source.describe(i)
        try:  # the worker's message does not cross processes: re-read once (rare) for it
            self._source.example(i)
            reason = "could not be read in a worker process"
        except UnreadableImageError as err:
            reason = err.reason
        self.skipped.append(Skipped(i, path, reason))
        self._source.unreadable[path] = reason
        logger.warning("skipped unreadable image %s (%s)", path, reason)

    def close(self) -> None:
        """Stops worker processes and threads (idempotent)."""
        it, self._it = self._it, None
        self._done = self._num_batches
        if it is not None and hasattr(it, "close"):
            it.close()

    def __enter__(self) -> BatchIterator:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --------------------------------------------------------------------------------------------
# sources


class ImageSource(abc.ABC):
    """A random-access labelled image collection, read on demand (base of every source).

    Subclasses set :attr:`name`, :attr:`class_names` and :attr:`image_shape` and implement
    ``__len__`` and :meth:`read`; everything else (batching, shuffling, sharding, splitting,
    workers) is shared.

    Attributes:
      name: Human-readable name, e.g. ``"folder:JPEGImages/train"``.
      class_names: Class names in label order (``len == num_classes``).
      image_shape: ``(H, W, C)`` of every image this source yields.
      unreadable: ``{path: reason}`` of every item found unreadable so far by iterators of
        this source in this process (accumulates across epochs; main process only).
    """

    name: str
    class_names: tuple[str, ...]
    image_shape: tuple[int, int, int]

    @property
    def unreadable(self) -> dict[str, str]:
        if "_unreadable" not in self.__dict__:
            self._unreadable: dict[str, str] = {}
        return self._unreadable

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_unreadable", None)
        return state

    @property
    def num_classes(self) -> int:
        """Number of classes ``C`` (labels lie in ``[0, C)``)."""
        return len(self.class_names)

    @abc.abstractmethod
    def __len__(self) -> int:
        """Number of items ``N``."""

    @abc.abstractmethod
    def read(self, index: int) -> tuple[np.ndarray, int]:
        """Reads item ``index`` (``0 <= index < N``) as stored.

        Returns:
          ``(pixels, label)``: ``[H, W, C]`` uint8 (or float in ``[0, 1]``) pixels of shape
          :attr:`image_shape` and an int label in ``[0, num_classes)``.

        Raises:
          UnreadableImageError: If the item cannot be decoded (names the file).
        """

    @property
    def labels(self) -> np.ndarray | None:
        """``[N]`` int32 labels when known without decoding (folder, IDX, memory), else None."""
        return None

    def describe(self, index: int) -> str:
        """A human-readable location of item ``index`` (its file path for folders)."""
        return f"{self.name}[{index}]"

    def example(self, index: int) -> tuple[np.ndarray, int]:
        """Item ``index`` as the pipeline yields it (before ``normalize``).

        Returns:
          ``(image, label)``: ``[H, W, C]`` float32 in ``[0, 1]`` (uint8 / 255) and an int.

        Raises:
          IndexError: If ``index`` is out of range.
          UnreadableImageError: If the item cannot be decoded.
          ValueError: If the source yields a wrong shape or label (names the item).
        """
        n = len(self)
        if not 0 <= index < n:
            raise IndexError(f"index must be in [0, {n}), got {index}")
        pixels, label = self.read(index)
        image = _to_unit_float(np.asarray(pixels), self.describe(index))
        if image.shape != self.image_shape:
            raise ValueError(
                f"{self.describe(index)} has shape {image.shape}, expected {self.image_shape}"
            )
        label = int(label)
        if not 0 <= label < self.num_classes:
            raise ValueError(
                f"{self.describe(index)} has label {label}, outside [0, {self.num_classes})"
            )
        return image, label

    # ---- index-level views ------------------------------------------------------------------

    def take(self, indices: Sequence[int] | np.ndarray, *, name: str | None = None) -> ImageSource:
        """A view of the items ``indices`` (in that order; repeats allowed), read lazily.

        Args:
          indices: ``[M]`` ints in ``[0, N)``.
          name: Name of the view; default ``"<name>[M items]"``.

        Returns:
          A source whose item ``k`` is item ``indices[k]`` of this one (``.parent`` and
          ``.indices`` give the mapping back, e.g. to list a split's files).
        """
        return _SubsetSource(self, indices, name)

    def subset(self, n: int, *, seed: int | None = None) -> ImageSource:
        """``n`` items, chosen as :func:`svebi_jax.data.subset` chooses them.

        ``seed=None`` keeps the first ``n``; an int keeps ``default_rng(seed).permutation(N)[:n]``.
        """
        total = len(self)
        n = _positive_int(n, "n")
        if n > total:
            raise ValueError(f"n must be at most the source length {total}, got {n}")
        if seed is None:
            return self.take(np.arange(n), name=f"{self.name}[:{n}]")
        perm = np.random.default_rng(_check_seed(seed)).permutation(total)
        return self.take(perm[:n], name=f"{self.name}[{n}@{seed}]")

    def split(
        self, test_fraction: float, *, seed: int, stratify: bool = False
    ) -> tuple[ImageSource, ImageSource]:
        """Deterministic seeded ``(train, test)`` partition.

        ``stratify=False`` (default) takes exactly the indices :func:`svebi_jax.data.split`
        takes for ``N`` items (``p = default_rng(seed).permutation(N)``, test ``p[:n_test]``,
        train ``p[n_test:]``, ``n_test = round(N · test_fraction)``), so a stream and the same
        data in memory split identically. ``stratify=True`` splits each class ``c``
        separately: its ``n_c`` items (in source order) are permuted by
        ``default_rng([seed, c])`` and the first ``round(n_c · test_fraction)`` go to test;
        each part is then in source order. Class proportions are then kept to within one
        item per class; this needs :attr:`labels` (folder, IDX, memory; not tfds, whose split
        strings such as ``"train[:80%]"`` serve instead).

        Args:
          test_fraction: Fraction in ``(0, 1)``; both parts must be non-empty.
          seed: Non-negative int seed.
          stratify: Whether to split each class separately.

        Returns:
          ``(train, test)`` sources named ``"<name>/train"`` and ``"<name>/test"``.
        """
        if not isinstance(stratify, bool):
            raise ValueError(f"stratify must be a bool, got {stratify!r}")
        if not stratify:
            train_idx, test_idx = split_indices(len(self), test_fraction, seed=seed)
        else:
            seed = _check_seed(seed)
            fraction = _check_fraction(test_fraction)
            labels = self.labels
            if labels is None:
                raise ValueError(
                    f"stratify=True needs labels known without decoding; {self.name} has none "
                    "(for tfds use split strings, e.g. 'train[:80%]')"
                )
            test_parts = []
            for c in range(self.num_classes):
                members = np.flatnonzero(labels == c)
                n_test = int(round(len(members) * fraction))
                perm = np.random.default_rng([seed, c]).permutation(len(members))
                test_parts.append(members[perm[:n_test]])
            test_idx = np.sort(np.concatenate(test_parts))
            train_idx = np.setdiff1d(np.arange(len(self)), test_idx)
            if not (len(test_idx) and len(train_idx)):
                raise ValueError(
                    f"test_fraction={test_fraction} of N={len(self)} items gives "
                    f"{len(test_idx)} test items after stratification; both parts must be "
                    "non-empty"
                )
        return (
            self.take(train_idx, name=f"{self.name}/train"),
            self.take(test_idx, name=f"{self.name}/test"),
        )

    # ---- batches ----------------------------------------------------------------------------

    def num_batches(
        self, batch_size: int, *, drop_remainder: bool = False, shard: Any = None
    ) -> int:
        """Batches per epoch on one host: ``ceil(N / (B·P))``, or ``floor`` with
        ``drop_remainder`` (arguments as in :meth:`batches`)."""
        batch_size = _positive_int(batch_size, "batch_size")
        _, count = _resolve_shard(shard)
        global_batch = batch_size * count
        n = len(self)
        if drop_remainder:
            return n // global_batch
        return -(-n // global_batch)

    def batches(
        self,
        batch_size: int,
        *,
        seed: int | None = None,
        epoch: int = 0,
        num_epochs: int = 1,
        start: int = 0,
        drop_remainder: bool = False,
        shard: Any = None,
        num_workers: int = 0,
        prefetch: int = 2,
        num_threads: int | None = None,
        normalize: Any = None,
        on_error: str = "skip",
    ) -> BatchIterator:
        """Fixed-shape batches of one epoch (or ``num_epochs``) for this host.

        Row ``k`` of step ``s`` on host ``h`` of ``P`` holds item ``π_e(g)`` of the source,

        .. math::
          g = s \\, B P + h \\, B + k, \\qquad
          \\text{padding (mask False) when } g \\ge N,

        with ``π_e`` the epoch's permutation (identity when ``seed`` is None).

        Args:
          batch_size: Per-host batch size ``B`` (the global batch is ``B·P``).
          seed: ``None`` keeps source order (``epoch`` then has no effect); an int shuffles
            with the per-epoch seed ``SeedSequence([seed, epoch])``.
          epoch: Non-negative epoch number; each epoch has its own order.
          num_epochs: Epochs ``epoch, epoch + 1, ...`` to yield back to back, each exactly as
            a separate call would (``it.steps_per_epoch`` batches each). One iterator over
            many epochs keeps its worker processes, which a new iterator per epoch restarts.
          start: Index of the first batch to yield, counted across the ``num_epochs`` epochs
            (``0 <= start <= num_epochs · steps_per_epoch``): resuming an interrupted pass at
            batch ``start`` yields exactly the remaining batches of the full pass, without
            reading the skipped ones.
          drop_remainder: Drop the last global batch when it is short (every row then has
            ``mask`` True unless unreadable); otherwise pad it (``mask`` False).
          shard: ``None`` for this JAX process (``jax.process_index()`` of
            ``jax.process_count()``), a pair ``(index, count)``, or a
            ``grain.sharding.ShardOptions`` (e.g. ``ShardByJaxProcess()``).
          num_workers: Worker processes that read and decode (grain ``mp_prefetch``; spawned
            per iterator, a few seconds each: they import this package; a script must start
            them under ``if __name__ == "__main__":``). ``0`` reads in this process. The
            batches do not depend on it.
          prefetch: Batches each process reads ahead (``>= 1``; ``0`` reads on demand).
          num_threads: Reader threads per process (Pillow releases the GIL while decoding and
            resizing); default ``prefetch``.
          normalize: ``None`` (images in ``[0, 1]``), ``"imagenet"`` (torchvision's
            mean/std) or a pair ``(mean, std)`` of scalars or ``[C]`` values: the images
            become ``(x - mean) / std``. Applied in the workers.
          on_error: ``"skip"`` (default) masks out unreadable items and reports them;
            ``"raise"`` raises :class:`~svebi_jax.data.folder.UnreadableImageError`.

        Returns:
          A :class:`BatchIterator` of ``num_epochs · num_batches(...) - start``
          :class:`Batch` es.

        Raises:
          ValueError: For an invalid argument (named), or ``drop_remainder=True`` with fewer
            items than one global batch.
        """
        import grain

        batch_size = _positive_int(batch_size, "batch_size")
        epoch = _non_negative_int(epoch, "epoch")
        num_epochs = _positive_int(num_epochs, "num_epochs")
        num_workers = _non_negative_int(num_workers, "num_workers")
        prefetch = _non_negative_int(prefetch, "prefetch")
        num_threads = prefetch if num_threads is None else num_threads
        num_threads = _non_negative_int(num_threads, "num_threads")
        on_error = _check_on_error(on_error)
        if not isinstance(drop_remainder, bool):
            raise ValueError(f"drop_remainder must be a bool, got {drop_remainder!r}")
        shard = _resolve_shard(shard)
        norm = _normalization(normalize, self.image_shape[-1])
        steps = self.num_batches(batch_size, drop_remainder=drop_remainder, shard=shard)
        if steps == 0:
            raise ValueError(
                f"drop_remainder=True leaves no batch: {self.name} has {len(self)} items, "
                f"fewer than one global batch of {batch_size * shard[1]} "
                f"(batch_size={batch_size} x {shard[1]} shards)"
            )
        seed = None if seed is None else _check_seed(seed)
        item = _ReadItem(self, seed, epoch, steps, batch_size, shard, norm, on_error)
        total = steps * num_epochs
        start = _non_negative_int(start, "start")
        if start > total:
            raise ValueError(
                f"start must be at most num_epochs x steps_per_epoch = {total}, got {start}"
            )
        ds = grain.MapDataset.range(start * batch_size, total * batch_size)
        ds = ds.map(item).batch(batch_size)
        it_ds = ds.to_iter_dataset(
            grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch)
        )
        if num_workers:
            _absl_flags_parsed()
            it_ds = it_ds.mp_prefetch(
                grain.MultiprocessingOptions(
                    num_workers=num_workers, per_worker_buffer_size=max(1, prefetch)
                )
            )
        return BatchIterator(self, it_ds, total - start, steps)

    def gather(self, indices: Sequence[int] | np.ndarray, *, normalize: Any = None) -> Batch:
        """Reads the items ``indices`` in this process as one :class:`Batch` (all ``mask``
        True), e.g. the top-k images of a filter for interpretation crops.

        Raises:
          UnreadableImageError: If one of them cannot be decoded.
        """
        idx = _check_indices(indices, len(self))
        norm = _normalization(normalize, self.image_shape[-1])
        images = np.zeros((len(idx), *self.image_shape), np.float32)
        labels = np.zeros(len(idx), np.int32)
        for row, i in enumerate(idx):  # decoding is per file
            images[row], labels[row] = self.example(int(i))
        if norm is not None:
            images = (images - norm[0]) / norm[1]
        return Batch(images, labels, np.ones(len(idx), bool), idx.astype(np.int32))

    def to_dataset(self, *, batch_size: int = 64, num_workers: int = 0) -> Dataset:
        """Decodes the whole source into an in-memory :class:`~svebi_jax.data.Dataset`
        (for small sources only: it holds ``N·H·W·C`` float32). Unreadable items raise."""
        images, labels = [], []
        with self.batches(
            batch_size, shard=(0, 1), num_workers=num_workers, on_error="raise"
        ) as it:
            for b in it:
                images.append(b.images[b.mask])
                labels.append(b.labels[b.mask])
        return Dataset(np.concatenate(images), np.concatenate(labels), self.num_classes, self.name)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, len={len(self)}, "
            f"image_shape={self.image_shape}, num_classes={self.num_classes})"
        )


def _check_indices(indices: Any, n: int) -> np.ndarray:
    idx = np.asarray(indices)
    if idx.ndim != 1 or not (np.issubdtype(idx.dtype, np.integer) or idx.size == 0):
        raise ValueError(f"indices must be a [M] int array, got {idx.dtype} {idx.shape}")
    idx = idx.astype(np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise ValueError(f"indices must lie in [0, {n}), got [{idx.min()}, {idx.max()}]")
    return idx


class _SubsetSource(ImageSource):
    """Items ``indices`` of ``parent`` (see :meth:`ImageSource.take`)."""

    def __init__(self, parent: ImageSource, indices: Any, name: str | None) -> None:
        self._parent = parent
        self._indices = _check_indices(indices, len(parent))
        self.name = name if name is not None else f"{parent.name}[{len(self._indices)} items]"
        self.class_names = parent.class_names
        self.image_shape = parent.image_shape

    def __len__(self) -> int:
        return len(self._indices)

    @property
    def parent(self) -> ImageSource:
        """The source this view indexes."""
        return self._parent

    @property
    def indices(self) -> np.ndarray:
        """``[M]`` positions in :attr:`parent` of this view's items (read-only copy)."""
        return self._indices.copy()

    def read(self, index: int) -> tuple[np.ndarray, int]:
        return self._parent.read(int(self._indices[index]))

    @property
    def labels(self) -> np.ndarray | None:
        labels = self._parent.labels
        return None if labels is None else labels[self._indices]

    def describe(self, index: int) -> str:
        return self._parent.describe(int(self._indices[index]))


class FolderSource(ImageSource):
    """``root/<class>/*.jpg|jpeg|png`` (AwA2's ``JPEGImages/<class>/`` layout), decoded on demand.

    Classes are the sub-directories in sorted order (or ``classes``); files are sorted by name
    within a class, as :func:`svebi_jax.data.load_image_folder` lists them. Files with another
    suffix are ignored and counted (:attr:`ignored_files`, logged at INFO); a file with an
    image suffix that does not decode is an unreadable item (see :meth:`batches`). Decoding
    is :func:`svebi_jax.data.folder.read_image`: Pillow, RGB, bilinear (antialiased) resize to
    ``image_size``, bit-identical to ``load_image_folder`` and to torchvision's
    ``Resize((S, S))`` on PIL images.

    Args:
      root: Directory with one sub-directory per class.
      image_size: ``S`` (``S x S``, default 224 as in the paper) or ``(H, W)``.
      classes: Class names in label order; default all sub-directories, sorted.
      resize: ``"stretch"`` (default) or ``"center_crop"`` (aspect ratio kept).
      draft: JPEG draft decoding, about 2x faster on large photos, not bit-equal (see
        :func:`~svebi_jax.data.folder.read_image`).

    Raises:
      FileNotFoundError: If ``root`` or a listed class directory is missing.
      ValueError: If ``root`` has no class directory or a class directory holds no image
        file (the message names the folder).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        image_size: int | tuple[int, int] = 224,
        classes: Sequence[str] | None = None,
        resize: str = "stretch",
        draft: bool = False,
    ) -> None:
        h, w = _check_size(image_size)
        _check_resize(resize)
        if not isinstance(draft, bool):
            raise ValueError(f"draft must be a bool, got {draft!r}")
        root = pathlib.Path(root)
        names, files, labels, ignored = list_image_folder(root, classes)
        if len(files) >= 2**31:
            raise ValueError(f"{root} holds {len(files)} images; at most 2**31 - 1 supported")
        self.root = root
        self.files = [os.fspath(f) for f in files]
        self._labels = labels
        self.class_names = names
        self.image_shape = (h, w, 3)
        self.resize = resize
        self.draft = draft
        self.ignored_files = ignored
        self.name = f"folder:{root.resolve().name}"
        if ignored:
            logger.info("%s: ignored %d non-image file(s)", self.name, ignored)

    def __len__(self) -> int:
        return len(self.files)

    @property
    def labels(self) -> np.ndarray:
        return self._labels

    def read(self, index: int) -> tuple[np.ndarray, int]:
        pixels = read_image(
            self.files[index], self.image_shape[:2], resize=self.resize, draft=self.draft
        )
        return pixels, int(self._labels[index])

    def describe(self, index: int) -> str:
        return self.files[index]


class IdxSource(ImageSource):
    """MNIST-style IDX files, read per item (raw files memory-mapped, gzip decompressed).

    File names and ``split`` are those of :func:`svebi_jax.data.load_idx_dir`; images are
    ``[H, W, 1]``. A raw (uncompressed) images file is memory-mapped, so memory stays bounded
    whatever its size; a ``.gz`` file cannot be mapped and is held decompressed (uint8: 47 MB
    for MNIST's training set). Labels are read once.

    Args:
      path: Directory holding the IDX files.
      split: ``"train"`` or ``"test"``.
      num_classes: Number of classes; default ``max(label) + 1``, refused when the labels
        skip a class (a corrupt label byte; see :func:`~svebi_jax.data.idx.infer_num_classes`).

    Raises:
      FileNotFoundError, ValueError: As :func:`~svebi_jax.data.load_idx_dir`; also if a
        label lies outside ``[0, num_classes)``.
    """

    def __init__(
        self, path: str | os.PathLike, split: str = "test", *, num_classes: int | None = None
    ) -> None:
        root = pathlib.Path(path)
        self.image_path, label_path, images, labels = open_idx_split(root, split, mapped=True)
        if num_classes is None:
            num_classes = infer_num_classes(labels, label_path)
        num_classes = _positive_int(num_classes, "num_classes")
        if labels.size and not (labels.min() >= 0 and labels.max() < num_classes):
            raise ValueError(
                f"{label_path} has labels in [{labels.min()}, {labels.max()}], outside "
                f"[0, num_classes={num_classes})"
            )
        self._labels = labels.astype(np.int32)
        self._mapped = isinstance(images, np.memmap)
        self._images = None if self._mapped else images
        self._num = int(images.shape[0])
        self.image_shape = (int(images.shape[1]), int(images.shape[2]), 1)
        self.class_names = tuple(str(c) for c in range(num_classes))
        self.name = f"{root.resolve().name}-{split}"

    def __len__(self) -> int:
        return self._num

    def _array(self) -> np.ndarray:
        if self._images is None:  # mapped lazily, once per process (maps do not pickle)
            self._images = open_idx(self.image_path)
        return self._images

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        if self._mapped:
            state["_images"] = None
        return state

    @property
    def labels(self) -> np.ndarray:
        return self._labels

    def read(self, index: int) -> tuple[np.ndarray, int]:
        return np.asarray(self._array()[index])[..., None], int(self._labels[index])

    def describe(self, index: int) -> str:
        return f"{self.image_path}[{index}]"


class TfdsSource(ImageSource):
    """A TensorFlow Datasets split read with ``tfds.data_source`` (random access, no TF graph).

    Calls ``tfds.data_source(name, split=split, data_dir=data_dir, download=download)``
    (``pip install svebi-jax[tfds]``; the dataset must be prepared in the ``array_record``
    format, which ``download=True`` does). Class names and count come from the label
    feature; the image and label keys from the dataset's ``supervised_keys``.

    Args:
      name: tfds name, e.g. ``"mnist"``, ``"cifar10"``, ``"imagenette/160px"``.
      split: tfds split string, e.g. ``"train"``, ``"train[:80%]"``.
      data_dir: tfds data directory; ``None`` uses the tfds default.
      download: Whether tfds may download and prepare the data.
      image_size: Resize every image to ``S x S`` or ``(H, W)`` (as
        :func:`~svebi_jax.data.folder.resize_image`); required when the image feature has no
        fixed shape.
      resize: ``"stretch"`` or ``"center_crop"``.
      num_classes: Override the class count of the label feature.
    """

    def __init__(
        self,
        name: str,
        split: str,
        *,
        data_dir: str | os.PathLike | None = None,
        download: bool = True,
        image_size: int | tuple[int, int] | None = None,
        resize: str = "stretch",
        num_classes: int | None = None,
    ) -> None:
        from svebi_jax.data.tfds import _import_tfds

        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty tfds dataset name, got {name!r}")
        if not isinstance(split, str) or not split:
            raise ValueError(f"split must be a non-empty tfds split string, got {split!r}")
        _check_resize(resize)
        size = None if image_size is None else _check_size(image_size)
        tfds = _import_tfds("TfdsSource")
        self._source = tfds.data_source(
            name,
            split=split,
            data_dir=None if data_dir is None else os.fspath(data_dir),
            download=download,
        )
        info = self._source.dataset_info
        keys = tuple(getattr(info, "supervised_keys", None) or ("image", "label"))
        self._image_key, self._label_key = keys[0], keys[1]
        label_feature = info.features[self._label_key]
        if num_classes is None:
            num_classes = getattr(label_feature, "num_classes", None)
            if num_classes is None:
                raise ValueError(
                    f"tfds {name!r} label feature {self._label_key!r} has no num_classes; "
                    "pass num_classes"
                )
        num_classes = _positive_int(num_classes, "num_classes")
        names = list(getattr(label_feature, "names", None) or [])
        self.class_names = (
            tuple(names) if len(names) == num_classes else tuple(map(str, range(num_classes)))
        )
        shape = tuple(info.features[self._image_key].shape)
        channels = shape[-1] if len(shape) == 3 and shape[-1] is not None else 1
        if size is None:
            if len(shape) not in (2, 3) or None in shape[:2]:
                raise ValueError(
                    f"tfds {name!r} images have shape {shape} (not fixed); pass image_size"
                )
            size = (int(shape[0]), int(shape[1]))
        self._resize_to = None if image_size is None else size
        self._resize = resize
        self.image_shape = (size[0], size[1], int(channels))
        self.name = f"tfds:{name}/{split}"

    def __len__(self) -> int:
        return len(self._source)

    def read(self, index: int) -> tuple[np.ndarray, int]:
        example = self._source[index]
        pixels = np.asarray(example[self._image_key])
        if pixels.ndim == 2:
            pixels = pixels[..., None]
        if self._resize_to is not None:
            pixels = resize_image(pixels, self._resize_to, resize=self._resize)
        return pixels, int(example[self._label_key])


class ArraySource(ImageSource):
    """An in-memory :class:`~svebi_jax.data.Dataset` behind the streaming interface.

    Worker processes each receive a copy of the arrays: keep ``num_workers=0`` (the default)
    for in-memory data, where nothing needs decoding.
    """

    def __init__(self, dataset: Dataset, *, class_names: Sequence[str] | None = None) -> None:
        if not isinstance(dataset, Dataset):
            raise TypeError(f"dataset must be a svebi_jax.data.Dataset, got {type(dataset)}")
        self.dataset = dataset
        self.name = dataset.name
        self.image_shape = dataset.image_shape
        names = (
            tuple(map(str, range(dataset.num_classes)))
            if class_names is None
            else tuple(class_names)
        )
        if len(names) != dataset.num_classes:
            raise ValueError(
                f"class_names must have num_classes={dataset.num_classes} entries, got {len(names)}"
            )
        self.class_names = names

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def labels(self) -> np.ndarray:
        return self.dataset.labels

    def read(self, index: int) -> tuple[np.ndarray, int]:
        return self.dataset.images[index], int(self.dataset.labels[index])


class SyntheticSource(ImageSource):
    """A deterministic synthetic source of any length (tests, benchmarks, memory checks).

    Item ``i`` is the uint8 image ``(7h + 13w + 29c + i) mod 256`` with label
    ``i mod num_classes``: cheap to make, and checkable from its index alone.

    Args:
      num_items: ``N``, any positive int below ``2**31``.
      image_shape: ``(H, W, C)``.
      num_classes: Number of classes.
    """

    def __init__(
        self,
        num_items: int,
        *,
        image_shape: tuple[int, int, int] = (32, 32, 3),
        num_classes: int = 10,
    ) -> None:
        self._num = _positive_int(num_items, "num_items")
        if self._num >= 2**31:
            raise ValueError(f"num_items must be below 2**31, got {num_items}")
        if not (isinstance(image_shape, tuple) and len(image_shape) == 3):
            raise ValueError(f"image_shape must be a triple (H, W, C), got {image_shape!r}")
        self.image_shape = tuple(_positive_int(d, "image_shape entries") for d in image_shape)
        self.class_names = tuple(map(str, range(_positive_int(num_classes, "num_classes"))))
        self.name = f"synthetic:{self._num}"
        h, w, c = np.indices(self.image_shape)
        self._base = ((7 * h + 13 * w + 29 * c) % 256).astype(np.uint8)

    def __len__(self) -> int:
        return self._num

    def read(self, index: int) -> tuple[np.ndarray, int]:
        return self._base + np.uint8(index % 256), index % self.num_classes


# --------------------------------------------------------------------------------------------
# entry points


def as_source(data: Dataset | ImageSource) -> ImageSource:
    """Returns ``data`` as an :class:`ImageSource` (a ``Dataset`` is wrapped in
    :class:`ArraySource`), so a stage can accept either form."""
    if isinstance(data, ImageSource):
        return data
    if isinstance(data, Dataset):
        return ArraySource(data)
    raise TypeError(
        f"data must be a svebi_jax.data.Dataset or ImageSource, got {type(data).__name__}"
    )


def open_stream(
    spec: str,
    *,
    split: str = "train",
    image_size: int | tuple[int, int] | None = None,
    data_dir: str | os.PathLike | None = None,
    resize: str = "stretch",
) -> ImageSource:
    """Opens a dataset spec as a streaming :class:`ImageSource` (nothing decoded yet).

    The specs and ``split`` rules are those of :func:`svebi_jax.data.load`:

    * ``"folder:PATH"`` -> :class:`FolderSource` (``image_size`` default 224). Single split:
      ``split="train"`` is every image; divide it with :meth:`ImageSource.split`.
    * ``"idx:PATH"`` -> :class:`IdxSource` with ``split`` ``"train"`` or ``"test"``.
    * ``"tfds:NAME"`` -> :class:`TfdsSource` with ``split`` passed to tfds verbatim and
      ``data_dir`` as its data directory.
    * ``"mnist-5k"`` -> :class:`ArraySource` over :func:`~svebi_jax.data.load_mnist5k`
      (5,000 digits, in memory; single split).

    Args:
      spec: One of the forms above.
      split: Split name (see above).
      image_size: ``S`` or ``(H, W)`` to resize folder and tfds images to; ``None`` keeps
        tfds images at their size and uses 224 for folders. IDX and ``mnist-5k`` images are
        not resized: a different size raises.
      data_dir: For ``tfds:``, the tfds data directory; for ``idx:`` and ``folder:``, the base
        of a relative ``PATH``.
      resize: ``"stretch"`` or ``"center_crop"`` (folder and tfds).

    Raises:
      ValueError: If ``spec`` is not an accepted form (the message lists them), ``split`` is
        invalid for it, or ``image_size`` cannot apply.
    """
    from svebi_jax.data import _parse_spec, _resolve, _single_split
    from svebi_jax.data.mnist5k import load_mnist5k

    kind, arg = _parse_spec(spec)
    if not isinstance(split, str) or not split:
        raise ValueError(f"split must be a non-empty str, got {split!r}")
    _check_resize(resize)
    if kind == "tfds":
        return TfdsSource(arg, split, data_dir=data_dir, image_size=image_size, resize=resize)
    if kind == "idx":
        source: ImageSource = IdxSource(_resolve(arg, data_dir), split)
    else:
        _single_split(spec, split)
        if kind == "folder":
            return FolderSource(
                _resolve(arg, data_dir),
                image_size=224 if image_size is None else image_size,
                resize=resize,
            )
        source = ArraySource(load_mnist5k())
    if image_size is not None and _check_size(image_size) != source.image_shape[:2]:
        raise ValueError(
            f"image_size={image_size!r} cannot apply to {spec!r}, whose images are "
            f"{source.image_shape[:2]} and are not resized; pass image_size=None"
        )
    return source


def prefetch_to_device(
    batches: Iterable[Batch], size: int = 2, sharding: Any = None
) -> Iterator[Batch]:
    """Keeps ``size`` batches in flight to the accelerator while the current one is used.

    ``jax.device_put`` is asynchronous, so the host-to-device copy of the next batches
    overlaps the computation on the current one. With several processes, each contributes
    its own rows (``jax.make_array_from_process_local_data``) to global arrays.

    Args:
      batches: Iterable of :class:`Batch` (or any pytree of host arrays).
      size: Batches to keep on the device ahead (``>= 1``).
      sharding: ``None`` (default device) or a ``jax.sharding.Sharding`` for every leaf,
        e.g. ``NamedSharding(mesh, PartitionSpec("data"))`` to split the batch axis.

    Yields:
      The batches with ``jax.Array`` leaves.
    """
    import jax

    size = _positive_int(size, "size")

    def put(batch):
        if sharding is None:
            return jax.device_put(batch)
        if jax.process_count() == 1:
            return jax.device_put(batch, sharding)
        return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), batch)

    it = iter(batches)
    queue = collections.deque(put(b) for b in itertools.islice(it, size))
    while queue:
        yield queue.popleft()
        queue.extend(put(b) for b in itertools.islice(it, 1))

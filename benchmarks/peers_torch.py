"""PyTorch peers of svebi_jax's networks: what a user would write with snnTorch or plain torch.

Two peers, each with a converter that loads svebi_jax parameters so both sides run the same
network on the same weights (used to check that they compute the same thing):

- :class:`SnnTorchShallow`: the paper's shallow MNIST SNN (conv5(12)-LIF-maxpool2-conv5(64)-
  LIF-maxpool2-fc128-LIF-fc10 integrator readout) written as in snnTorch's tutorials:
  ``snntorch.Leaky`` neurons with the subtract reset, a Python loop over the ``T`` steps that
  recomputes ``conv1`` at every step, the readout currents summed over time. The surrogate is
  the SVEBI authors' triangle (the one svebi_jax trains with). :func:`train_epoch` trains it
  with the settings of ``svebi_jax.train.TrainConfig`` (Adam, linear warm-up + cosine decay,
  ±1 px random shifts, batch 100, shuffled with the same seed).
- :class:`SVGG19Loop`: a spiking VGG19 stepped one timestep at a time with the authors'
  semantics: per step, every conv layer's current, the membrane lists updated with the
  ``subtract_then_leak`` reset :math:`U \\leftarrow \\beta (U - \\theta S) + W X`, spikes
  :math:`S = H(U - \\theta)`, and the spike maps of all 16 conv layers summed per step
  (time-means :math:`\\bar S` at the end). It never holds more than one step of activations.

Not part of the library; imported only by ``benchmarks/`` (needs the ``bench`` extra: torch,
snntorch).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "SVGG19Loop",
    "SnnTorchShallow",
    "TriangleSpike",
    "collect_vgg_maps",
    "shallow_from_params",
    "train_epoch",
    "vgg_state_dict",
]


class TriangleSpike(torch.autograd.Function):
    """Heaviside forward, the authors' triangle surrogate ``0.3 max(0, 1 - |x|/θ)`` backward
    (``x = U - θ``), as svebi_jax's default ``surrogate="triangle"``."""

    @staticmethod
    def forward(ctx, x, threshold=1.0):
        ctx.save_for_backward(x)
        ctx.threshold = threshold
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * 0.3 * torch.clamp(1.0 - x.abs() / ctx.threshold, min=0.0), None


def triangle_spike(x: torch.Tensor) -> torch.Tensor:
    return TriangleSpike.apply(x)


# ----------------------------------------------------------------------------- shallow SNN


class SnnTorchShallow(nn.Module):
    """The shallow SNN in snnTorch (NCHW), stepped in a Python loop as its tutorials do.

    Args:
      beta: LIF decay.
      threshold: firing threshold.
      num_steps: ``T``.
      channels, hidden, num_classes: layer widths (paper: ``(12, 64)``, 128, 10).
      pool: ``"max"`` (the paper) or ``"avg"`` 2×2 pooling. Max pooling's gradient differs
        between the frameworks on ties (frequent with binary spikes): torch routes it to the
        first maximal entry, JAX shares it equally among them.
    """

    def __init__(
        self,
        *,
        beta: float = 0.95,
        threshold: float = 1.0,
        num_steps: int = 10,
        channels: tuple[int, int] = (12, 64),
        hidden: int = 128,
        num_classes: int = 10,
        pool: str = "max",
    ):
        import snntorch as snn

        super().__init__()
        if pool not in ("max", "avg"):
            raise ValueError(f"pool must be 'max' or 'avg', got {pool!r}")
        self.pool = F.max_pool2d if pool == "max" else F.avg_pool2d
        c1, c2 = channels
        self.num_steps = num_steps
        self.conv1 = nn.Conv2d(1, c1, 5)
        self.conv2 = nn.Conv2d(c1, c2, 5)
        self.fc1 = nn.Linear(c2 * 4 * 4, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)
        kw = dict(
            beta=beta, threshold=threshold, spike_grad=triangle_spike, reset_mechanism="subtract"
        )
        self.lif1, self.lif2, self.lif3 = snn.Leaky(**kw), snn.Leaky(**kw), snn.Leaky(**kw)

    def forward(self, x: torch.Tensor, record: bool = False):
        """``x`` ``[B, 1, 28, 28]`` → logits ``[B, K]`` (readout summed over ``T``, divided by
        ``T``); with ``record``, also the conv spike trains ``[T, B, C, H, W]``."""
        mem1, mem2, mem3 = self.lif1.init_leaky(), self.lif2.init_leaky(), self.lif3.init_leaky()
        acc = 0.0
        rec1, rec2 = [], []
        for _ in range(self.num_steps):
            spk1, mem1 = self.lif1(self.conv1(x), mem1)
            spk2, mem2 = self.lif2(self.conv2(self.pool(spk1, 2)), mem2)
            spk3, mem3 = self.lif3(self.fc1(self.pool(spk2, 2).flatten(1)), mem3)
            acc = acc + self.fc2(spk3)
            if record:
                rec1.append(spk1)
                rec2.append(spk2)
        logits = acc / self.num_steps
        if record:
            return logits, {"conv1": torch.stack(rec1), "conv2": torch.stack(rec2)}
        return logits


def shallow_from_params(params: Mapping, **kwargs) -> SnnTorchShallow:
    """An :class:`SnnTorchShallow` holding svebi_jax's shallow-SNN parameters.

    Conv kernels HWIO → OIHW; ``fc1``'s input rows are permuted from svebi_jax's NHWC
    flatten order (``y·W·C + x·C + c``) to torch's NCHW order (``c·H·W + y·W + x``).
    """
    net = SnnTorchShallow(**kwargs)
    p = {k: {n: np.asarray(v) for n, v in d.items()} for k, d in params.items()}
    c2 = p["conv2"]["kernel"].shape[-1]
    hidden = p["fc1"]["kernel"].shape[-1]
    fc1 = p["fc1"]["kernel"].reshape(4, 4, c2, hidden).transpose(3, 2, 0, 1).reshape(hidden, -1)
    with torch.no_grad():
        for name in ("conv1", "conv2"):
            getattr(net, name).weight.copy_(
                torch.from_numpy(p[name]["kernel"].transpose(3, 2, 0, 1))
            )
            getattr(net, name).bias.copy_(torch.from_numpy(p[name]["bias"]))
        net.fc1.weight.copy_(torch.from_numpy(np.ascontiguousarray(fc1)))
        net.fc1.bias.copy_(torch.from_numpy(p["fc1"]["bias"]))
        net.fc2.weight.copy_(torch.from_numpy(p["fc2"]["kernel"].T.copy()))
        net.fc2.bias.copy_(torch.from_numpy(p["fc2"]["bias"]))
    return net


def warmup_cosine(step: int, *, peak: float, warmup: int, total: int) -> float:
    """``optax.warmup_cosine_decay_schedule(0, peak, warmup, total, 0)`` at ``step``."""
    if step < warmup:
        return peak * step / max(warmup, 1)
    frac = min(max((step - warmup) / max(total - warmup, 1), 0.0), 1.0)
    return 0.5 * peak * (1.0 + math.cos(math.pi * frac))


def random_shift(images: torch.Tensor, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    """Per-image random translation by ``U{-s..s}²`` pixels with zero fill (NCHW)."""
    b, c, h, w = images.shape
    s = max_shift
    padded = F.pad(images, (s, s, s, s))
    off = torch.randint(0, 2 * s + 1, (b, 2), generator=gen)
    rows = (off[:, 0, None] + torch.arange(h))[:, None, :, None]
    cols = (off[:, 1, None] + torch.arange(w))[:, None, None, :]
    bi = torch.arange(b)[:, None, None, None]
    ci = torch.arange(c)[None, :, None, None]
    return padded[bi, ci, rows, cols]


def train_epoch(
    net: SnnTorchShallow,
    optimizer: torch.optim.Optimizer,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    batch_size: int,
    seed: int,
    step0: int,
    schedule,
    augment_shift: int = 1,
) -> tuple[float, int]:
    """One epoch of minibatch training (drop remainder), the order from
    ``np.random.default_rng(seed).permutation(N)`` like ``svebi_jax.data.batches``.

    Args:
      images: ``[N, 28, 28, 1]`` float32 NHWC (converted to NCHW once).
      schedule: ``step -> learning rate``.

    Returns:
      ``(mean training loss, optimizer steps done so far)``.
    """
    x_all = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
    y_all = torch.from_numpy(labels.astype(np.int64))
    order = torch.from_numpy(np.random.default_rng(seed).permutation(len(labels)))
    gen = torch.Generator().manual_seed(seed)
    losses = []
    step = step0
    for start in range(0, (len(labels) // batch_size) * batch_size, batch_size):
        idx = order[start : start + batch_size]
        x, y = x_all[idx], y_all[idx]
        if augment_shift:
            x = random_shift(x, augment_shift, gen)
        for group in optimizer.param_groups:
            group["lr"] = schedule(step)
        loss = F.cross_entropy(net(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.detach())
        step += 1
    return float(torch.stack(losses).mean()), step


# ----------------------------------------------------------------------------- SVGG19


#: Number of 3×3 conv layers per VGG19 block.
_BLOCKS = (2, 2, 4, 4, 4)


class SVGG19Loop(nn.Module):
    """Spiking VGG19 stepped one timestep at a time (the authors' per-step loop).

    Module names follow torchvision's VGG19 (``features.i``, ``classifier.j``), so
    :func:`vgg_state_dict` output loads into ``svebi_jax.models.load_torchvision_vgg19``.

    Args:
      widths: the five block widths (VGG19: ``(64, 128, 256, 512, 512)``).
      hidden: width of the two hidden fc layers (4096).
      num_classes: readout size.
      final_map: ``(h, w)`` of the map entering ``classifier.0`` (7×7 at 224²).
      beta, threshold, num_steps: LIF decay, threshold and ``T``.
    """

    def __init__(
        self,
        *,
        widths: Sequence[int] = (64, 128, 256, 512, 512),
        hidden: int = 4096,
        num_classes: int = 50,
        final_map: tuple[int, int] = (7, 7),
        beta: float = 0.95,
        threshold: float = 1.0,
        num_steps: int = 25,
    ):
        super().__init__()
        self.beta, self.threshold, self.num_steps = beta, threshold, num_steps
        features: list[nn.Module] = []
        self.pool_after: list[bool] = []
        c_in = 3
        for n, width in zip(_BLOCKS, widths, strict=True):
            for i in range(n):
                features += [nn.Conv2d(c_in, width, 3, padding=1), nn.Identity()]
                self.pool_after.append(i == n - 1)
                c_in = width
            features.append(nn.Identity())  # torchvision's MaxPool2d slot
        self.features = nn.Sequential(*features)
        self.convs = [m for m in self.features if isinstance(m, nn.Conv2d)]
        flat = c_in * final_map[0] * final_map[1]
        self.classifier = nn.Sequential(
            nn.Linear(flat, hidden),
            nn.Identity(),
            nn.Identity(),
            nn.Linear(hidden, hidden),
            nn.Identity(),
            nn.Identity(),
            nn.Linear(hidden, num_classes),
        )
        self.fcs = [self.classifier[0], self.classifier[3]]

    @property
    def readout(self) -> nn.Linear:
        return self.classifier[6]

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``x`` ``[B, 3, H, W]`` (normalized) → ``(logits [B, K], maps)``: the time-mean
        spike maps ``[B, C, H, W]`` of the 16 conv layers."""
        beta, th = self.beta, self.threshold
        n_layers = len(self.convs) + len(self.fcs)
        mems: list[torch.Tensor | None] = [None] * n_layers
        spks: list[torch.Tensor | None] = [None] * n_layers
        sums: list[torch.Tensor | None] = [None] * len(self.convs)
        acc = None
        for _ in range(self.num_steps):
            h = x
            for i, conv in enumerate(self.convs):
                h = self._lif(i, conv(h), mems, spks, beta, th)
                sums[i] = h.clone() if sums[i] is None else sums[i].add_(h)
                if self.pool_after[i]:
                    h = F.max_pool2d(h, 2)
            h = h.flatten(1)
            for j, fc in enumerate(self.fcs):
                h = self._lif(len(self.convs) + j, fc(h), mems, spks, beta, th)
            out = self.readout(h)
            acc = out if acc is None else acc.add_(out)
        return acc / self.num_steps, [s / self.num_steps for s in sums]

    @staticmethod
    def _lif(i, current, mems, spks, beta, th):
        """``U ← β (U − θ S) + I``, ``S = H(U − θ)`` (authors' subtract-then-leak)."""
        if mems[i] is None:
            mems[i] = current
        else:
            mems[i] = (mems[i] - th * spks[i]).mul_(beta).add_(current)
        spks[i] = (mems[i] > th).to(current.dtype)
        return spks[i]


def vgg_state_dict(net: SVGG19Loop) -> dict[str, np.ndarray]:
    """The loop's weights as a torchvision-style ``{key: array}`` state dict."""
    return {k: v.detach().numpy().copy() for k, v in net.state_dict().items()}


def collect_vgg_maps(net: SVGG19Loop, images_nhwc: np.ndarray) -> tuple[np.ndarray, list]:
    """Runs :class:`SVGG19Loop` on NHWC images; returns ``(logits, maps NHWC)`` as numpy."""
    x = torch.from_numpy(np.ascontiguousarray(images_nhwc.transpose(0, 3, 1, 2)))
    logits, maps = net(x)
    return logits.numpy(), [m.permute(0, 2, 3, 1).numpy() for m in maps]


def init_vgg_for_spiking(net: SVGG19Loop, seed: int = 0, gain: float = 1.0) -> SVGG19Loop:
    """He-normal weights (``std = gain·sqrt(2 / fan_in)``) and zero biases, so that every
    layer of the untrained network spikes (torch's default init leaves deep layers silent)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in list(net.convs) + list(net.fcs) + [net.readout]:
            fan_in = m.weight[0].numel()
            m.weight.normal_(0.0, gain * math.sqrt(2.0 / fan_in), generator=gen)
            m.bias.zero_()
    return net

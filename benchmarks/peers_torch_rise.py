"""PyTorch peers of the insertion/deletion rows: RISE's ``CausalMetric`` on a torch shallow SNN.

Two pieces, written as a PyTorch user of RISE would write them:

- :class:`TorchSNN`: a per-timestep PyTorch forward pass of a svebi_jax spiking network
  (``Conv``, ``LIF``, ``MaxPool``/``AvgPool``/``SumPool``, ``Flatten``, ``Dense`` specs; the
  shallow SNN in particular), with the same weights (copied from the flax parameters, NCHW
  layouts) and the same neurons: the membrane lists of the authors' code, advanced one step at a
  time,

  .. math::

    U[t] = \\beta U[t-1] + I[t] - \\theta S[t-1] \\ (\\text{"subtract"}), \\quad
    U[t] = \\beta (U[t-1] - \\theta S[t-1]) + I[t] \\ (\\text{"subtract\\_then\\_leak"}),
    \\quad S[t] = H(U[t] - \\theta),

  a spike in the step of the crossing, and an integrating readout whose potential after ``T``
  steps, divided by ``T``, is the logit. The first convolution's current on the static input is
  computed once (``hoist_static=True``, the same saving svebi_jax's runner makes; the
  authors recompute it every step: ``hoist_static=False``).
- :class:`CausalMetric`: ``evaluation.py`` of RISE (Petsiuk et al., 2018, ``eclique/RISE``),
  its batched ``evaluate``: the class predicted on the unperturbed images, pixels ranked by
  ``flip(argsort(saliency))``, then for each of the ``n + 1`` curve points the model is called
  on every batch of the current images and ``step`` more pixels per image (all channels) are
  copied from the finish images (NumPy fancy indexing on the shared buffers), and the AUC by
  RISE's trapezoid rule. Insertion starts from :func:`blur` (RISE's ``gkern(11, 5)`` as a
  zero-padded ``conv2d``), deletion ends at zeros.

The only deviation from RISE's code: the argsort is stable (``kind="stable"``) so that tied
saliency values order like svebi_jax's :func:`~svebi_jax.metrics.insdel.pixel_order`
(RISE's NumPy quicksort makes no promise on ties; the benchmark's maps have none).

``torch`` (a CPU build, the ``bench`` extra) and SciPy (for ``gkern``) are imported by this
module only; the library never imports it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from svebi_jax import layers as L

__all__ = ["CausalMetric", "TorchSNN", "auc", "blur", "gkern", "to_nchw"]


# --------------------------------------------------------------------------------- model


class TorchSNN(torch.nn.Module):
    """A svebi_jax spiking network, run one timestep at a time in PyTorch (see the module doc).

    Args:
      layers: the network's layer specs (``SpikingNetwork.layers``).
      weights: ``{name: {"kernel", "bias"}}`` flax-layout arrays (``SpikingNetwork.weights()``):
        conv kernels ``[kh, kw, C_in, C_out]``, dense kernels ``[F_in, F_out]``.
      config: the network's :class:`~svebi_jax.layers.SNNConfig` (``T``, ``beta``,
        ``threshold``, ``reset``; ``readout_beta``).
      input_shape: ``(H, W, C)`` of one image (to permute the first dense layer after
        ``Flatten`` from flax's ``H, W, C`` order to torch's ``C, H, W``).
      hoist_static: compute the first synaptic layer's current once (the input is static).

    Calling it on ``[B, C, H, W]`` float32 images returns ``[B, K]`` class probabilities
    (the softmax of the logits), as RISE's ``nn.Sequential(model, nn.Softmax(dim=1))``.
    """

    def __init__(self, layers, weights, config, input_shape, *, hoist_static: bool = True):
        super().__init__()
        layers = tuple(layers)
        if config.reset not in ("subtract", "subtract_then_leak"):
            raise ValueError(f"config.reset must be a subtract reset, got {config.reset!r}")
        self.specs = layers
        self.config = config
        self.hoist_static = hoist_static
        self.params = torch.nn.ParameterDict()
        h, w, c = input_shape
        shape_before_flatten = None
        for spec, _, geo in L._walk(layers, input_shape):
            if isinstance(spec, L.LIF) and spec.name is not None:
                raise ValueError("named LIF layers (per-neuron parameters) are not supported")
            if isinstance(spec, L.Flatten):
                shape_before_flatten = (h, w, c)
            if isinstance(spec, L.Conv):
                if spec.groups != 1 or spec.dilation != 1:
                    raise ValueError(f"{spec}: only groups=1, dilation=1 convolutions")
                k = np.asarray(weights[spec.name]["kernel"], np.float32)
                self.params[spec.name + "_w"] = _param(k.transpose(3, 2, 0, 1))
            elif isinstance(spec, L.Dense):
                k = np.asarray(weights[spec.name]["kernel"], np.float32)  # [F_in, F_out]
                if shape_before_flatten is not None:  # rows in H, W, C order -> C, H, W
                    fh, fw, fc = shape_before_flatten
                    k = k.reshape(fh, fw, fc, -1).transpose(2, 0, 1, 3).reshape(fh * fw * fc, -1)
                    shape_before_flatten = None
                self.params[spec.name + "_w"] = _param(k.T)
            if isinstance(spec, (L.Conv, L.Dense)) and spec.use_bias:
                self.params[spec.name + "_b"] = _param(weights[spec.name]["bias"])
            h, w, c = geo.height, geo.width, geo.channels

    def _op(self, spec, x):
        if isinstance(spec, L.Conv):
            return F.conv2d(
                x,
                self.params[spec.name + "_w"],
                self.params[spec.name + "_b"] if spec.use_bias else None,
                stride=spec.stride,
                padding=spec.padding,
            )
        if isinstance(spec, L.Dense):
            b = self.params[spec.name + "_b"] if spec.use_bias else None
            return F.linear(x, self.params[spec.name + "_w"], b)
        if isinstance(spec, L.Flatten):
            return x.flatten(1)
        k, s, p = L._window(spec)
        if isinstance(spec, L.MaxPool):
            return F.max_pool2d(x, k, s, p)
        y = F.avg_pool2d(x, k, s, p, count_include_pad=True)
        return y * (k * k) if isinstance(spec, L.SumPool) else y
        # (Scale and named LIFs are refused in __init__.)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W] -> [B, K]`` logits: ``T`` steps through every layer."""
        cfg = self.config
        beta, theta, leak_reset = cfg.beta, cfg.threshold, cfg.reset == "subtract_then_leak"
        specs = self.specs
        # Layers before the first LIF see a static input: hoisted out of the time loop.
        first_lif = next((i for i, s in enumerate(specs) if isinstance(s, L.LIF)), len(specs))
        start = 0
        if self.hoist_static:
            for spec in specs[:first_lif]:
                x = self._op(spec, x)
            start = first_lif
        mem: list[torch.Tensor | None] = [None] * len(specs)
        spk: list[torch.Tensor | None] = [None] * len(specs)
        readout = None
        for _ in range(cfg.num_steps):
            y = x
            for i in range(start, len(specs)):
                spec = specs[i]
                if isinstance(spec, L.LIF):
                    if mem[i] is None:
                        u = y
                    elif leak_reset:
                        u = beta * (mem[i] - theta * spk[i]) + y
                    else:
                        u = beta * mem[i] + y - theta * spk[i]
                    s = (u > theta).to(u.dtype)
                    mem[i], spk[i] = u, s
                    y = s
                else:
                    y = self._op(spec, y)
            readout = y if readout is None else cfg.readout_beta * readout + y
        return readout / cfg.num_steps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.logits(x), dim=1)


def _param(a) -> torch.nn.Parameter:
    return torch.nn.Parameter(torch.from_numpy(np.array(a, np.float32, copy=True)), False)


def to_nchw(images) -> torch.Tensor:
    """``[B, H, W, C]`` NumPy/JAX images as a contiguous ``[B, C, H, W]`` float32 tensor."""
    nchw = np.asarray(images, np.float32).transpose(0, 3, 1, 2)
    return torch.from_numpy(np.array(nchw, order="C", copy=True))


# --------------------------------------------------------------------------------- RISE


def gkern(klen: int = 11, nsig: float = 5.0, channels: int = 1) -> torch.Tensor:
    """RISE's ``gkern``: a Dirac delta through ``scipy.ndimage.gaussian_filter``, one per
    channel (``[C, C, klen, klen]``, zero off the diagonal)."""
    from scipy.ndimage import gaussian_filter

    inp = np.zeros((klen, klen))
    inp[klen // 2, klen // 2] = 1
    k = gaussian_filter(inp, nsig)
    kern = np.zeros((channels, channels, klen, klen), np.float32)
    for c in range(channels):
        kern[c, c] = k
    return torch.from_numpy(kern)


def blur(x: torch.Tensor, klen: int = 11, nsig: float = 5.0) -> torch.Tensor:
    """RISE's insertion substrate: ``conv2d(x, gkern(11, 5), padding=klen // 2)``."""
    return F.conv2d(x, gkern(klen, nsig, x.shape[1]), padding=klen // 2)


def auc(arr: np.ndarray) -> np.ndarray:
    """RISE's ``auc`` along the first axis: ``(sum(arr[1:-1]) + arr[0]/2 + arr[-1]/2) / (n-1)``."""
    return (arr[1:-1].sum(0) + arr[0] / 2 + arr[-1] / 2) / (arr.shape[0] - 1)


class CausalMetric:
    """RISE's ``CausalMetric(model, mode, step, substrate_fn)``, on the CPU.

    Args:
      model: ``[b, C, H, W] -> [b, K]`` class probabilities (a :class:`TorchSNN`).
      mode: ``"del"`` (deletion) or ``"ins"`` (insertion).
      step: pixels changed per step.
      substrate_fn: ``[b, C, H, W] -> [b, C, H, W]``: :func:`blur` for insertion,
        ``torch.zeros_like`` for deletion.
    """

    def __init__(self, model: Callable, mode: str, step: int, substrate_fn: Callable):
        assert mode in ("del", "ins")
        self.model = model
        self.mode = mode
        self.step = step
        self.substrate_fn = substrate_fn

    @torch.inference_mode()
    def evaluate(self, img_batch: torch.Tensor, exp_batch: np.ndarray, batch_size: int):
        """RISE's batched ``evaluate``.

        Args:
          img_batch: ``[N, C, H, W]`` float32 images.
          exp_batch: ``[N, H, W]`` saliency maps.
          batch_size: images per model call; must divide ``N`` (as in RISE).

        Returns:
          ``scores`` ``[n_steps + 1, N]`` float64: the probability of each image's predicted
          class at each curve point (RISE's return value).
        """
        n_samples, ch, h, w = img_batch.shape
        hw = h * w
        assert n_samples % batch_size == 0, "batch_size must divide the number of images"
        n_batches = n_samples // batch_size
        predictions = torch.cat(
            [self.model(img_batch[i * batch_size : (i + 1) * batch_size]) for i in range(n_batches)]
        )
        top = np.argmax(predictions.numpy(), -1)
        n_steps = (hw + self.step - 1) // self.step
        scores = np.empty((n_steps + 1, n_samples))
        salient_order = np.flip(np.argsort(exp_batch.reshape(-1, hw), axis=1, kind="stable"), -1)
        r = np.arange(n_samples).reshape(n_samples, 1)
        substrate = torch.zeros_like(img_batch)
        for j in range(n_batches):
            sl = slice(j * batch_size, (j + 1) * batch_size)
            substrate[sl] = self.substrate_fn(img_batch[sl])
        if self.mode == "del":
            start, finish = img_batch.clone(), substrate
        else:
            start, finish = substrate, img_batch.clone()
        start_np = start.numpy().reshape(n_samples, ch, hw)  # shares memory with start
        finish_np = finish.numpy().reshape(n_samples, ch, hw)
        rows = np.arange(batch_size)
        for i in range(n_steps + 1):
            for j in range(n_batches):
                sl = slice(j * batch_size, (j + 1) * batch_size)
                preds = self.model(start[sl]).numpy()
                scores[i, sl] = preds[rows, top[sl]]
            coords = salient_order[:, self.step * i : self.step * (i + 1)]
            start_np[r, :, coords] = finish_np[r, :, coords]
        return scores

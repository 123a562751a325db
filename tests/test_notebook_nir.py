"""``notebooks/nir_snntorch.ipynb``: structure, and an execution on a small setting.

The notebook needs torch, snnTorch and nirtorch (the ``nir`` extra); the execution test is
skipped without them. It runs papermill-style: a cell overriding the ``parameters`` cell's knobs
is inserted after it, the notebook runs in a fresh ``python3`` kernel and the ``RESULTS {...}``
line of its last cell is checked: svebi_jax's spikes equal snnTorch's exactly.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import pathlib

import nbformat
import pytest
from IPython.core.inputtransformer2 import TransformerManager
from nbformat.v4 import new_code_cell

REPO = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "nir_snntorch.ipynb"
COLAB = "https://colab.research.google.com/github/svebi-jax/svebi_jax/blob/main/notebooks/"

# About a minute on 2 CPU cores (JAX compilation and the lasso dominate).
SMALL = {
    "NUM_STEPS": 4,
    "N_TRAIN": 600,
    "TRAIN_BATCHES": 30,
    "N_EVAL": 16,
    "N_SHOW": 3,
    "TORCH_THREADS": 1,  # torch's threads fight pytest's and the other jobs' on 2 cores
}


def _code(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def test_nir_notebook_structure():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert f"]({COLAB}nir_snntorch.ipynb)" in nb.cells[0].source
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    tree = ast.parse(TransformerManager().transform_cell(tagged[0].source))
    assigned = {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets}
    assert set(SMALL) <= assigned
    from tests.test_notebook import check_install_cell, check_stored_outputs

    check_stored_outputs(nb, min_figures=1)
    check_install_cell(nb)


@pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("torch", "snntorch", "nirtorch")),
    reason="needs the `nir` extra (torch, snntorch, nirtorch)",
)
@pytest.mark.slow  # ~40 s; the NIR round trips themselves are in test_nir_io.py
def test_nir_notebook_executes_small(tmp_path, monkeypatch):
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
    from nbclient import NotebookClient

    try:
        KernelSpecManager().get_kernel_spec("python3")
    except NoSuchKernel:
        from ipykernel.kernelspec import write_kernel_spec

        write_kernel_spec(str(tmp_path / "jupyter" / "kernels" / "python3"))
        monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    )
    nb = nbformat.read(NOTEBOOK, as_version=4)
    at = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    source = "\n".join(f"{k} = {v!r}" for k, v in SMALL.items())
    nb.cells.insert(at + 1, new_code_cell(source, metadata={"tags": ["injected-parameters"]}))
    workdir = tmp_path / "run"
    workdir.mkdir()
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(workdir)}}
    ).execute()
    lines = [
        line
        for c in _code(nb)
        for o in c.outputs
        if o.output_type == "stream" and o.name == "stdout"
        for line in o.text.splitlines()
        if line.startswith("RESULTS ")
    ]
    (line,) = lines
    results = json.loads(line[len("RESULTS ") :])
    assert results["n_train"] == SMALL["N_TRAIN"] and results["n_eval"] == SMALL["N_EVAL"]
    # Equal dynamics; only float32 near-threshold ties (torch and XLA round a conv differently)
    # may flip a spike: at most 1 in 10,000 spike values.
    assert set(results["spike_mismatches"]) == {"conv1", "conv2"}
    for layer, n in results["spike_mismatches"].items():
        assert n <= 1e-4 * results["spike_values"][layer], (layer, n)
    assert results["max_logit_difference"] < 1e-3
    # Same network, same predictions (ties aside): the accuracies agree; 30 steps learn.
    assert abs(results["torch_accuracy"] - results["jax_accuracy"]) <= 0.004
    assert results["jax_accuracy"] > 0.3
    for row in results["insertion_deletion"].values():
        assert 0.0 <= row["insertion"] <= 1.0 and 0.0 <= row["deletion"] <= 1.0
    assert (workdir / "snntorch_mnist.nir").is_file()

"""``notebooks/svgg19_colab.ipynb``: structure, stored outputs, and an execution at tiny size.

The notebook is meant for a Colab GPU/TPU runtime; on a CPU (``SVEBI_NOTEBOOK_SIZE=small``) it
runs the same pipeline at 32², T = 2 and 1/16 of VGG19's widths. The execution test runs it
that way in a fresh kernel and checks its ``RESULTS`` line against facts that do not depend
on the (tiny, briefly trained) model: the lasso's budget, the layers, the score ranges.
"""

from __future__ import annotations

import ast
import json
import os
import pathlib

import nbformat
import pytest
from IPython.core.inputtransformer2 import TransformerManager

from tests.test_notebook import check_install_cell, check_stored_outputs

REPO = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "svgg19_colab.ipynb"
COLAB = "https://colab.research.google.com/github/svebi-jax/svebi_jax/blob/main/notebooks/"
SVGG19_LAYERS = [f"conv{b}_{i}" for b, n in enumerate((2, 2, 4, 4, 4), 1) for i in range(1, n + 1)]


def _code(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def _results(nb) -> dict:
    lines = [
        line
        for c in _code(nb)
        for o in c.outputs
        if o.output_type == "stream" and o.name == "stdout"
        for line in o.text.splitlines()
        if line.startswith("RESULTS ")
    ]
    (line,) = lines
    return json.loads(line[len("RESULTS ") :])


def check_results(results: dict) -> None:
    assert results["small"] is True and results["image_size"] == 32 and results["num_steps"] == 2
    k = results["num_classes"]
    assert k == 4 and results["n_train"] + results["n_test"] == 4 * 8
    assert 0.0 <= results["test_accuracy"] <= 1.0
    assert results["W_shape"] == [2 * 4 + 2 * 8 + 4 * 16 + 4 * 32 + 4 * 32, k]  # m: all filters
    assert all(0.0 <= s <= 20.0 + 1e-3 for s in results["W_column_sums"])  # mu = 20
    assert list(results["layer_distribution"]) == SVGG19_LAYERS
    assert set(results["insertion_deletion"]) == {"SVEBI", "SNN-Grad2D", "input intensity"}
    for row in results["insertion_deletion"].values():
        assert 0.0 <= row["insertion"] <= 1.0 and 0.0 <= row["deletion"] <= 1.0
    assert set(results["timings_s"]) >= {"fine-tune", "relevant filters", "insertion/deletion"}


def test_svgg19_notebook_structure_and_stored_run():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert f"]({COLAB}svgg19_colab.ipynb)" in nb.cells[0].source
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    tree = ast.parse(TransformerManager().transform_cell(tagged[0].source))
    assigned = {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets}
    assert {"SMALL", "IMAGE_SIZE", "NUM_STEPS", "WEIGHTS", "MU", "N_EVAL"} <= assigned
    check_install_cell(nb)
    install = next(c.source for c in _code(nb) if "%pip" in c.source)
    assert '"jax[cuda12]"' in install and '"jax[tpu]"' in install  # JAX for the accelerator
    # Stored executed, at the tiny CPU size, and saying so in its output.
    check_stored_outputs(nb, min_figures=3)
    check_results(_results(nb))
    text = "".join(o.get("text", "") for c in _code(nb) for o in c.outputs)
    assert "No GPU or TPU found" in text and "size: tiny (CPU)" in text


@pytest.mark.slow
def test_svgg19_notebook_executes_tiny(tmp_path, monkeypatch):
    from nbclient import NotebookClient

    monkeypatch.setenv("SVEBI_NOTEBOOK_SIZE", "small")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    )
    nb = nbformat.read(NOTEBOOK, as_version=4)
    for c in _code(nb):
        c.outputs, c.execution_count = [], None
    NotebookClient(
        nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    check_results(_results(nb))
    assert (tmp_path / "photos").is_dir()

"""Tests of ``notebooks/quickstart.ipynb``: its structure, and an execution on a small setting.

The notebook is executed papermill-style: a cell overriding the knobs of its ``parameters``
cell is inserted right after that cell, the notebook runs in a fresh ``python3`` kernel
(``nbclient``), and the ``RESULTS {...}`` JSON line printed by its last cell is checked.
"""

from __future__ import annotations

import ast
import importlib
import json
import os
import pathlib

import nbformat
import pytest
from IPython.core.inputtransformer2 import TransformerManager
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell

import svebi_jax

REPO = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "quickstart.ipynb"
COLAB_URL = (
    "https://colab.research.google.com/github/svebi-jax/svebi_jax/blob/main/notebooks/"
    "quickstart.ipynb"
)
# Modules the notebook reaches as ``sv.<name>`` (besides the names in ``svebi_jax.__all__``).
PUBLIC_SUBMODULES = ("attribution", "data", "train", "methods", "metrics", "viz")

# Small enough to run in well under a minute on 2 CPU cores (JAX compilation dominates), large
# enough that one epoch learns something (about 50 % held-out accuracy).
SMALL = {
    "EPOCHS": 1,
    "NUM_STEPS": 4,
    "N_TRAIN": 600,
    "N_EVAL": 16,
    "IG_STEPS": 4,
    "TOP_K": 10,
    "N_SHOW": 3,
    "N_FILTERS": 3,
}
# The larger setting (slow): the paper's T = 10, a few epochs on part of the data.
LARGER = {"EPOCHS": 3, "N_TRAIN": 2000, "N_EVAL": 64, "IG_STEPS": 16, "TOP_K": 50}


def read_notebook() -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOK, as_version=4)


def parameters_index(nb) -> int:
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"expected one cell tagged 'parameters', found {len(tagged)}"
    return tagged[0]


def cell_ast(source: str) -> ast.Module:
    """Parses a code cell after IPython's own transformations (``%magic`` -> Python)."""
    return ast.parse(TransformerManager().transform_cell(source))


def code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


# ----------------------------------------------------------------------------- structure


def test_notebook_structure():
    nb = read_notebook()
    nbformat.validate(nb)
    assert nb.nbformat == 4

    # Colab badge at the top.
    first = nb.cells[0]
    assert first.cell_type == "markdown"
    assert f"]({COLAB_URL})" in first.source
    assert "colab-badge.svg" in first.source

    # One parameters cell that sets every knob the tests override.
    cell = nb.cells[parameters_index(nb)]
    assert cell.cell_type == "code"
    assigned = {
        t.id
        for node in cell_ast(cell.source).body
        if isinstance(node, ast.Assign)
        for t in node.targets
        if isinstance(t, ast.Name)
    }
    missing = (set(SMALL) | set(LARGER)) - assigned
    assert not missing, f"parameters cell does not set {sorted(missing)}"

    check_stored_outputs(nb)


def check_stored_outputs(nb, *, min_figures: int = 4) -> None:
    """The notebook is stored executed: every code cell ran, in order, without an error, and
    its figures and ``RESULTS`` line are there (the docs site shows these outputs)."""
    cells = code_cells(nb)
    counts = [c.execution_count for c in cells]
    assert counts == list(range(1, len(cells) + 1)), f"not stored executed in order: {counts}"
    outputs = [o for c in cells for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    pngs = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(pngs) >= min_figures, f"{len(pngs)} figures stored"
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "RESULTS {" in text
    assert "/tmp/" not in text and "../shared" not in text


def check_install_cell(nb) -> None:
    """One install cell: ``REPO_URL = <pyproject's Repository>`` and a guarded ``%pip``."""
    pip_cells = [c for c in code_cells(nb) if "%pip" in c.source]
    assert len(pip_cells) == 1
    (tree,) = [cell_ast(c.source) for c in pip_cells]
    assign, node = tree.body
    assert isinstance(assign, ast.Assign) and assign.targets[0].id == "REPO_URL"
    pyproject = (REPO / "pyproject.toml").read_text()
    assert f'Repository = "{assign.value.value}"' in pyproject
    assert isinstance(node, ast.Try)
    (handler,) = node.handlers
    assert isinstance(handler.type, ast.Name) and handler.type.id == "ImportError"
    assert "run_line_magic('pip'" in ast.unparse(handler) and "{REPO_URL}" in ast.unparse(handler)


def test_notebook_pip_install_is_guarded():
    nb = read_notebook()
    check_install_cell(nb)
    pip_cells = [c for c in code_cells(nb) if "%pip" in c.source]
    (tree,) = [cell_ast(c.source) for c in pip_cells]
    node = tree.body[-1]
    assert isinstance(node, ast.Try)
    assert "import svebi_jax" in ast.unparse(node.body)
    (handler,) = node.handlers
    assert isinstance(handler.type, ast.Name) and handler.type.id == "ImportError"
    assert "run_line_magic('pip'" in ast.unparse(handler)


def _public_names(module) -> set[str]:
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n in dir(module) if not n.startswith("_")]
    return set(names)


def test_notebook_uses_only_public_api():
    nb = read_notebook()
    top = _public_names(svebi_jax) | set(PUBLIC_SUBMODULES)
    sub = {
        name: _public_names(importlib.import_module(f"svebi_jax.{name}"))
        for name in PUBLIC_SUBMODULES
    }
    for c in code_cells(nb):
        for node in ast.walk(cell_ast(c.source)):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    parts = alias.name.split(".")
                    assert not any(p.startswith("_") for p in parts), alias.name
                    if parts[0] == "svebi_jax":
                        assert len(parts) == 1 or parts[1] in PUBLIC_SUBMODULES, alias.name
            elif isinstance(node, ast.ImportFrom):
                module = node.module or ""
                assert not any(p.startswith("_") for p in module.split(".")), module
                assert not any(a.name.startswith("_") for a in node.names), ast.unparse(node)
                if module.startswith("svebi_jax"):
                    pytest.fail(f"use `import svebi_jax as sv`, not {ast.unparse(node)!r}")
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                if node.value.id == "sv" and node.attr != "__version__":
                    assert node.attr in top, f"sv.{node.attr} is not public API"
            elif (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Attribute)
                and isinstance(node.value.value, ast.Name)
                and node.value.value.id == "sv"
                and node.value.attr in sub
            ):
                assert node.attr in sub[node.value.attr], (
                    f"sv.{node.value.attr}.{node.attr} is not public API"
                )


# ----------------------------------------------------------------------------- execution


def _ensure_python3_kernel(tmp_path: pathlib.Path, monkeypatch) -> None:
    """Makes a ``python3`` kernel resolvable without any manual ``ipykernel install``.

    ``jupyter_client`` already falls back to ipykernel's native kernelspec (the current
    interpreter); should that be unavailable, a spec for this interpreter is written to a
    temporary Jupyter path.
    """
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec("python3")
        return
    except NoSuchKernel:
        pass
    from ipykernel.kernelspec import write_kernel_spec

    root = tmp_path / "jupyter"
    write_kernel_spec(str(root / "kernels" / "python3"))
    monkeypatch.setenv("JUPYTER_PATH", str(root))


def execute_notebook(overrides: dict, tmp_path: pathlib.Path, monkeypatch):
    """Runs the notebook with ``overrides`` injected after its parameters cell.

    Returns the executed notebook and the dict printed by its ``RESULTS`` line.
    """
    _ensure_python3_kernel(tmp_path, monkeypatch)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    # The kernel must import this checkout even where it is not pip-installed.
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    )
    nb = read_notebook()
    source = "# Injected by tests/test_notebook.py\n" + "\n".join(
        f"{k} = {v!r}" for k, v in overrides.items()
    )
    nb.cells.insert(
        parameters_index(nb) + 1,
        new_code_cell(source, metadata={"tags": ["injected-parameters"]}),
    )
    workdir = tmp_path / "run"
    workdir.mkdir()
    client = NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(workdir)}}
    )
    client.execute()  # raises CellExecutionError on the first failing cell

    errors = [o for c in code_cells(nb) for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
    lines = [
        line
        for c in code_cells(nb)
        for o in c.outputs
        if o.output_type == "stream" and o.name == "stdout"
        for line in o.text.splitlines()
        if line.startswith("RESULTS ")
    ]
    assert len(lines) == 1, f"expected one RESULTS line, got {len(lines)}"
    return nb, json.loads(lines[0][len("RESULTS ") :])


def check_results(nb, results: dict, overrides: dict) -> None:
    # The injected setting was used.
    assert results["n_train"] == overrides["N_TRAIN"]
    assert results["n_eval"] == overrides["N_EVAL"]

    # Accuracy: a fraction of the held-out digits (500 = 10 % of 5,000), above chance.
    acc, n_test = results["test_accuracy"], results["n_test"]
    assert n_test == 500
    assert isinstance(acc, float) and 0.1 < acc <= 1.0
    assert acc * n_test == pytest.approx(round(acc * n_test), abs=1e-6)

    # μ-lasso weights: [m = 12 + 64 filters, K = 10 classes], in {w >= 0, sum(w) <= μ}.
    mu = results["mu"]
    assert mu == 2.0
    assert results["W_shape"] == [76, 10]
    assert results["W_min"] >= 0.0
    sums = results["W_column_sums"]
    assert len(sums) == 10
    assert all(0.0 <= s <= mu + 1e-4 for s in sums), sums
    assert any(s > 0 for s in sums)
    # Relevant filters are exactly the positive weights, counted per layer.
    dist = results["layer_distribution"]
    assert list(dist) == ["conv1", "conv2"]
    assert sum(dist.values()) == results["W_nonzero"] > 0

    # Insertion/deletion AUCs of probabilities lie in [0, 1].
    table = results["insertion_deletion"]
    assert set(table) == {
        "SVEBI (aligned)",
        "SVEBI (stretch)",
        "SNN-Grad2D",
        "SNN-IG2D",
        "input intensity",
    }
    for name, row in table.items():
        for mode in ("insertion", "deletion"):
            assert 0.0 <= row[mode] <= 1.0, (name, mode, row[mode])

    # The figures rendered (layer distribution, heatmaps, interpretation, two curve plots).
    pngs = [
        o
        for c in code_cells(nb)
        for o in c.outputs
        if o.output_type == "display_data" and "image/png" in o.get("data", {})
    ]
    assert len(pngs) >= 4


@pytest.mark.slow  # ~1.3 min; a kernel running the whole notebook
def test_notebook_executes_small(tmp_path, monkeypatch):
    nb, results = execute_notebook(SMALL, tmp_path, monkeypatch)
    check_results(nb, results, SMALL)


@pytest.mark.slow
def test_notebook_executes_larger(tmp_path, monkeypatch):
    nb, results = execute_notebook(LARGER, tmp_path, monkeypatch)
    check_results(nb, results, LARGER)
    assert results["test_accuracy"] > 0.8

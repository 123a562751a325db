"""The README's front page: its size, its links, and its quickstart running as written.

The quickstart (the README's ``python`` block) runs in this process at a tiny size: the test
swaps a few literal pieces of the block for smaller ones (each must be present, so editing the
README's code without updating this test fails here) and checks the results against
independent facts. ``test_readme_quickstart_as_written`` (slow) runs it unchanged.
"""

from __future__ import annotations

import pathlib
import re

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
README = REPO / "README.md"

# Literal pieces of the quickstart and their tiny-size replacements.
TINY = {
    'sv.data.load("mnist-5k")': 'sv.data.subset(sv.data.load("mnist-5k"), 600, seed=0)',
    "TrainConfig(epochs=2)": "TrainConfig(epochs=1)",
    "test.images[:100]": "test.images[:6]",
}


def readme_text() -> str:
    return README.read_text(encoding="utf-8")


def python_blocks(text: str) -> list[tuple[int, str]]:
    """``(first line number, source)`` of every fenced ``python`` block."""
    blocks = []
    for m in re.finditer(r"^```python\n(.*?)^```", text, flags=re.S | re.M):
        blocks.append((text[: m.start()].count("\n") + 1, m.group(1)))
    return blocks


def test_readme_is_a_front_page():
    text = readme_text()
    lines = text.splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines (at most 200)"
    blocks = python_blocks(text)
    assert blocks, "README.md has no python code block"
    first_line, first = blocks[0]
    assert first_line <= 80, f"the first python block starts at line {first_line} (> 80)"
    assert "import svebi_jax" in first
    # The two commands, unchanged in spirit.
    assert "pip install -e . && python -m experiments.mnist_shallow" in text
    assert 'pip install -e ".[test]" && python -m pytest -q -n 2 --dist loadfile' in text
    # GPU/TPU installs, citation and licence.
    assert 'pip install -U "jax[cuda12]"' in text and 'pip install -U "jax[tpu]"' in text
    assert "10.1007/978-3-032-06066-2_27" in text and "Apache" in text


def test_readme_local_links_exist():
    text = readme_text()
    targets = re.findall(r"\]\(([^)#\s]+)\)", text)
    local = [t for t in targets if not re.match(r"[a-z]+://", t)]
    assert local, "README.md links to no file of the repository"
    figure = "docs/_static/figures/readme_svebi.png"
    missing = [t for t in local if t != figure and not (REPO / t).exists()]
    assert not missing, f"README.md links to missing files: {missing}"


def _run(source: str) -> dict:
    namespace: dict = {"__name__": "__readme__"}
    exec(compile(source, str(README), "exec"), namespace)  # noqa: S102
    return namespace


def _check(ns: dict, n_eval: int) -> None:
    import svebi_jax as sv

    rel, maps, scores, test = ns["rel"], ns["maps"], ns["scores"], ns["test"]
    assert isinstance(rel, sv.Relevance)
    # rel.filters lists exactly the positive weights of W, per class and layer.
    W = np.asarray(rel.W)
    assert W.shape == (12 + 64, 10)
    assert sum(len(ch) for f in rel.filters.values() for ch in f.values()) == np.sum(W > 0)
    assert np.all(W.sum(axis=0) <= rel.mu + 1e-4)
    # Maps of the 8 images, min-max normalized per image (or all zero without filters).
    maps = np.asarray(maps)
    assert maps.shape == (8, 28, 28)
    assert np.all((maps >= 0) & (maps <= 1 + 1e-6))
    # The same maps as the attribution function of sv.attribution with the same masks.
    ref = sv.attribution.svebi(ns["apply_fn"], rel.masks)(ns["params"], test.images[:8], None)
    np.testing.assert_allclose(maps, np.asarray(ref), atol=1e-6)
    for game in (scores.insertion, scores.deletion):
        assert np.asarray(game.curves).shape[0] == n_eval
        assert 0.0 <= float(game.mean_auc) <= 1.0
    assert scores.insertion.higher_is_better and not scores.deletion.higher_is_better


def test_readme_quickstart_runs_at_tiny_size(capsys):
    (_, source), *_ = python_blocks(readme_text())
    for old, new in TINY.items():
        assert old in source, f"the README's quickstart no longer contains {old!r}"
        source = source.replace(old, new)
    ns = _run(source)
    _check(ns, n_eval=6)
    assert "0" in capsys.readouterr().out


@pytest.mark.slow
def test_readme_quickstart_as_written():
    (_, source), *_ = python_blocks(readme_text())
    ns = _run(source)
    _check(ns, n_eval=100)

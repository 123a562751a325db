"""The documentation: the API reference covers every public name, one version everywhere,
product text free of issue numbers and paths outside the repository, and a consistent
repository URL.

The site itself is built (and looked at in a browser) by ``tests/test_docs_site.py`` (slow)
and by CI (``sphinx-build -W``); these checks run without Sphinx.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pathlib
import re
import sys

import pytest
import yaml

import svebi_jax

REPO = pathlib.Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
sys.path.insert(0, str(DOCS))

import _api  # noqa: E402

PYPROJECT_TEXT = (REPO / "pyproject.toml").read_text()
REPO_URL = re.search(r'^Repository = "([^"]+)"', PYPROJECT_TEXT, flags=re.M).group(1)


def product_texts() -> dict[str, str]:
    """README, the docs' own pages, the notebooks (sources and outputs) and the CLI's help."""
    files = [REPO / "README.md", REPO / "CHANGELOG.md", REPO / "CITATION.cff"]
    files += [
        p for p in DOCS.rglob("*") if p.suffix in {".md", ".rst", ".py"} and "_build" not in p.parts
    ]
    files += sorted((REPO / "notebooks").glob("*.ipynb"))
    texts = {str(p.relative_to(REPO)): p.read_text(encoding="utf-8") for p in files}
    from svebi_jax import cli

    parser = cli.build_parser()
    helps = [parser.format_help()]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps += [sub.format_help() for sub in action.choices.values()]
    texts["svebi --help"] = "\n".join(helps)
    return texts


# ----------------------------------------------------------------------------- API reference


def test_every_public_name_is_in_the_api_reference(tmp_path):
    documented = _api.write_pages(tmp_path)
    assert "svebi_jax" in documented and "svebi_jax.attribution" in documented
    assert not any("._" in m or m.startswith("_") for m in documented)
    for modname, names in documented.items():
        module = importlib.import_module(modname)
        page = (tmp_path / f"{modname}.rst").read_text()
        for name in names:
            assert hasattr(module, name), f"{modname}.__all__ lists {name!r}, which is missing"
            if _api._is_module_page(modname, name, documented):
                assert f":py:mod:`{modname}.{name}`" in page, (modname, name)
                continue
            home = _api.home_of(modname, name, documented)
            if home == modname:
                assert re.search(rf"^   {re.escape(name)}$", page, flags=re.M), (modname, name)
            else:
                assert f"<{home}.{name}>`" in page, (modname, name)
                home_page = (tmp_path / f"{home}.rst").read_text()
                assert re.search(rf"^   {re.escape(name)}$", home_page, flags=re.M)
    # The package's own __all__ (the names users meet first) is all there.
    top = set(documented["svebi_jax"])
    assert {"fit_relevance", "Relevance", "mu_lasso"} <= top
    assert set(svebi_jax.__all__) - {"__version__"} <= top | {
        n for n in svebi_jax.__all__ if _api._is_module_page("svebi_jax", n, documented)
    }


def test_api_page_module_links_resolve(tmp_path):
    documented = _api.write_pages(tmp_path)
    for page in tmp_path.glob("*.rst"):
        for mod in re.findall(r":py:mod:`([\w.]+)`", page.read_text()):
            assert mod in documented, f"{page.name} links to undocumented module {mod}"


def test_docstrings_have_no_control_characters():
    """``"\\frac"`` written as ``"\frac"`` in a non-raw docstring is a form feed: broken math."""
    import inspect

    bad = []
    for modname in _api.public_modules():
        module = importlib.import_module(modname)
        objs = [module] + [
            o
            for o in vars(module).values()
            if (inspect.isfunction(o) or inspect.isclass(o))
            and getattr(o, "__module__", None) == modname
        ]
        objs += [v for o in objs if inspect.isclass(o) for v in vars(o).values()]
        for o in objs:
            doc = getattr(o, "__doc__", None)
            if isinstance(doc, str) and any(c in doc for c in "\t\f\b\r\a\v"):
                bad.append(f"{modname}: {getattr(o, '__qualname__', o)}")
    assert not bad, bad


# ----------------------------------------------------------------------------- one version


def test_one_version_everywhere():
    version = svebi_jax.__version__
    assert re.fullmatch(r"\d+\.\d+\.\d+([a-z]+\d+)?", version)
    assert 'dynamic = ["version"]' in PYPROJECT_TEXT
    assert 'version = { attr = "svebi_jax.__version__" }' in PYPROJECT_TEXT
    cff = yaml.safe_load((REPO / "CITATION.cff").read_text())
    assert str(cff["version"]) == version
    conf = (DOCS / "conf.py").read_text()
    assert "release = svebi_jax.__version__" in conf
    assert re.search(r"^## \[Unreleased\]$", (REPO / "CHANGELOG.md").read_text(), flags=re.M)
    assert f"## [{version}]" in (REPO / "CHANGELOG.md").read_text()
    assert f"version = {{{version}}}" in (REPO / "README.md").read_text()


def test_package_files():
    licence = (REPO / "LICENSE").read_text()
    assert "Apache License" in licence and "Version 2.0, January 2004" in licence
    assert "END OF TERMS AND CONDITIONS" in licence
    assert 'license = { text = "Apache-2.0" }' in PYPROJECT_TEXT
    assert (REPO / "svebi_jax" / "py.typed").exists()
    assert 'svebi_jax = ["py.typed"]' in PYPROJECT_TEXT
    cff = yaml.safe_load((REPO / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["license"] == "Apache-2.0"
    assert cff["repository-code"] == REPO_URL
    paper = cff["preferred-citation"]
    assert paper["doi"] == "10.1007/978-3-032-06066-2_27" and paper["year"] == 2025
    assert "SVEBI" in paper["title"]


# ----------------------------------------------------------------------------- product text


@pytest.mark.parametrize(
    "pattern",
    [r"\bissues? #?\d+", r"\.\./shared", r"/tmp/", r"\bcommits? [0-9a-f]{7,40}\b"],
)
def test_product_text_speaks_of_the_product(pattern):
    hits = []
    for name, text in product_texts().items():
        for m in re.finditer(pattern, text, flags=re.I):
            line = text[: m.start()].count("\n") + 1
            hits.append(f"{name}:{line}: {text[max(0, m.start() - 40) : m.end() + 40]!r}")
    assert not hits, "\n".join(hits)


def test_the_repository_url_is_defined_once():
    """The notebooks install from pyproject's ``Repository`` URL, and link Colab to it."""
    slug = REPO_URL.removeprefix("https://github.com/")
    for path in sorted((REPO / "notebooks").glob("*.ipynb")):
        nb = json.loads(path.read_text())
        sources = ["".join(c["source"]) for c in nb["cells"]]
        code = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
        install = [s for s in code if "%pip install" in s and "svebi" in s]
        assert len(install) == 1, f"{path.name}: expected one install cell"
        assert f'REPO_URL = "{REPO_URL}"' in install[0], path.name
        urls = re.findall(r"https://github\.com/[\w.-]+/[\w.-]+", "\n".join(sources))
        assert all(u == REPO_URL for u in urls), (path.name, urls)
        assert (
            f"colab.research.google.com/github/{slug}/blob/main/notebooks/{path.name}"
            in (sources[0])
        )


@pytest.mark.slow
def test_own_model_guide_runs(capsys):
    """The worked example of the guide *Explaining your own JAX model*, with fewer steps."""
    text = (DOCS / "guides" / "own_model.md").read_text()
    blocks = re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)
    source = "\n".join(b for b in blocks if "TinySNN" in b or "fit_relevance" in b)
    assert "for i in range(200):" in source
    source = source.replace("for i in range(200):", "for i in range(20):")
    namespace: dict = {"__name__": "__guide__"}
    exec(compile(source, "own_model.md", "exec"), namespace)  # noqa: S102
    assert namespace["maps"].shape == (8, 28, 28)
    rel = namespace["rel"]
    assert rel.W.shape == (16, 10) and list(rel.filters[0]) == ["conv1"]
    assert "relevant filters of class 0" in capsys.readouterr().out

"""Sphinx configuration of the svebi_jax documentation.

Build: ``sphinx-build -W --keep-going -b html docs docs/_build/html`` (warnings are errors).
"""

from __future__ import annotations

import pathlib
import re
import shutil
import sys

DOCS = pathlib.Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(DOCS))

import _api  # noqa: E402

import svebi_jax  # noqa: E402

# -- Project -------------------------------------------------------------------------------------
project = "svebi_jax"
author = "The svebi_jax developers"
copyright = "The svebi_jax developers"  # noqa: A001
release = svebi_jax.__version__  # the one version: svebi_jax/__init__.py
version = release
# The repository URL is defined once, in pyproject.toml's [project.urls].
REPO_URL = re.search(
    r'^Repository = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), flags=re.M
).group(1)

# -- Generated sources: API pages and the notebooks ----------------------------------------------
# Stubs of names that no longer exist would stay behind (and fail the build): start afresh.
shutil.rmtree(DOCS / "api" / "modules" / "_autosummary", ignore_errors=True)
_api.write_pages(DOCS / "api" / "modules")
_NB_DIR = DOCS / "notebooks"
_NB_DIR.mkdir(exist_ok=True)
for _nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
    _dst = _NB_DIR / _nb.name
    if not _dst.exists() or _dst.read_bytes() != _nb.read_bytes():
        shutil.copyfile(_nb, _dst)


def _write_if_changed(path: pathlib.Path, text: str) -> None:
    """Writes a generated page only when its text changed (Sphinx then rebuilds only what
    depends on it)."""
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def _write_cli_help(path: pathlib.Path) -> None:
    """``svebi --help`` and every command's help, as the reference of the CLI guide."""
    import argparse
    import os

    os.environ["COLUMNS"] = "100"  # argparse wraps at the terminal width: make it fixed
    from svebi_jax import cli

    parser = cli.build_parser()
    blocks = [("svebi --help", parser.format_help())]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                blocks.append((f"svebi {name} --help", sub.format_help()))
    text = "".join(f"### `{title}`\n\n```text\n{body.rstrip()}\n```\n\n" for title, body in blocks)
    _write_if_changed(path, text)


_write_cli_help(DOCS / "guides" / "_cli_help.md")


def _write_benchmark_table(path: pathlib.Path) -> None:
    """The latest peer tables, one per recorded run, from the JSON each run wrote (date,
    machine, load, command). A later run of one section replaces that section's rows."""
    import json

    # (file, rows to drop: those a later run of their section replaced)
    sources = [
        ("benchmarks/results_peers_one_run.json", ("mu_lasso",)),
        ("benchmarks/results_lasso_peers.json", ()),
    ]

    def fmt(s: float) -> str:
        return f"{s * 1e3:.2f} ms" if s < 1 else f"{s:.2f} s"

    lines: list[str] = []
    for src, dropped in sources:
        run = json.loads((ROOT / src).read_text())
        m = run["machine"]
        # Output paths of the recorded command are the benchmarker's; show the reproducible part.
        command = re.sub(r" --(out|markdown) \S+", "", run["command"])
        lines += [
            f"**Date:** {m['date']} · **machine:** {m['cpu_count']} CPU cores "
            f"({m['cpu_model']}), backend `{m['backend']}`, no accelerator · JAX {m['jax']}, "
            f"svebi_jax {m['svebi_jax']} (`{m.get('git_commit', '?')}`) · load average at start "
            f"{m['loadavg_start']} · float32 matmul peak {m['peak']['gflops']:.0f} GFLOP/s",
            "",
            f"**Command:** `{command}` · all numbers: "
            f"{{download}}`{src.split('/')[-1]} <../{src}>`",
            "",
            "| benchmark | svebi_jax (median) | alternative (median) | speed-up | "
            "svebi_jax GFLOP/s (of peak) | agreement |",
            "|---|---|---|---|---|---|",
        ]
        for r in run["rows"]:
            name = r["name"].removeprefix("P. ")
            if dropped and name.startswith(dropped):
                continue
            gf = f"{r['gflops']:.1f} ({100 * r['peak_frac']:.0f} %)" if r.get("gflops") else ""
            agreement = r["agreement"].replace("|", "\\|")
            lines.append(
                f"| {name} | {fmt(r['svebi_s'])} | {fmt(r['peer_s'])} | {r['ratio']:.2f}× | {gf} "
                f"| {agreement} |"
            )
        lines.append("")
    text = "\n".join(lines)
    _write_if_changed(path, text)


_write_benchmark_table(DOCS / "_benchmarks_table.md")


def _write_study_tables(path: pathlib.Path) -> None:
    """The SNN-methods study's test tables, from its JSON (mean ± sd over the seeds done)."""
    import json

    src = "experiments/results/svebi_study_snn/svebi_study.json"
    run = json.loads((ROOT / src).read_text())
    link = f"../../{src}"
    recipes = [r for r in ("paper", "default") if r in run["test"]]

    def ms(stat: dict | None, digits: int = 3) -> str:
        if not stat:
            return ""
        return f"[{stat['mean']:.{digits}f} ± {stat['sd']:.{digits}f}]({link})"

    def seeds(r: str) -> str:
        return ", ".join(run["test"][r]["seeds_done"])

    lines = []
    if not run.get("complete"):
        lines += ["**Incomplete run**: the seeds done are listed per recipe.", ""]

    def percent(r: str) -> dict:
        a = run["test"][r]["accuracy"]
        return {"mean": 100 * a["mean"], "sd": 100 * a["sd"]}

    acc = ", ".join(f"{r} recipe {ms(percent(r), 2)} % ({seeds(r)})" for r in recipes)
    lines += [f"Test accuracy on all 10,000 real MNIST test digits: {acc}.", ""]
    head = "| method | " + " | ".join(f"{r}: ins ↑ | del ↓ | ROAD gap ↑" for r in recipes) + " |"
    lines += [head, "|---|" + "---|---|---|" * len(recipes)]
    names = list(run["test"][recipes[0]]["table"])
    for name in names:
        cells = []
        for r in recipes:
            row = run["test"][r]["table"].get(name, {})
            cells += [ms(row.get(k)) for k in ("insertion", "deletion", "road_gap")]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "**Against SNN-IG2D** (Δ = method − SNN-IG2D on the same test digits):", ""]
    lines += [
        "| contestant | " + " | ".join(f"{r}: Δ ins | Δ ROAD gap | beats" for r in recipes) + " |",
        "|---|" + "---|---|---|" * len(recipes),
    ]
    contestants = list(run["test"][recipes[0]]["versus_ig2d"]["contestants"])
    for name in contestants:
        cells = []
        for r in recipes:
            v = run["test"][r]["versus_ig2d"]["contestants"].get(name)
            if v is None:
                cells += ["", "", ""]
                continue
            beat = "yes" if v["beats"] else "no"
            if v["beats"]:
                beat += " (every seed)" if v["consistent"] else " (not every seed)"
                beat += "" if v["beyond_seed_noise"] else ", within seed noise"
            cells += [ms(v["delta"]["insertion"]), ms(v["delta"]["road_gap"]), beat]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    extra = [
        ("sparseness", "sparseness ↑"),
        ("complexity", "complexity ↓"),
        ("faithfulness_correlation", "faithfulness corr. ↑"),
        ("region_perturbation_auc", "region pert. AUC ↓"),
        ("random_logit", "random logit ↓"),
    ]
    for r in recipes:
        lines += [
            "",
            f"**More metrics, {r} recipe** (test only, never used for a choice):",
            "",
            "| method | " + " | ".join(label for _, label in extra) + " |",
            "|---|" + "---|" * len(extra),
        ]
        for name, row in run["test"][r]["table"].items():
            lines.append(f"| {name} | " + " | ".join(ms(row.get(k)) for k, _ in extra) + " |")
    text = "\n".join(lines) + "\n"
    _write_if_changed(path, text)


_write_study_tables(DOCS / "results" / "_study_snn_tables.md")

# -- Extensions ----------------------------------------------------------------------------------
extensions = [
    "myst_nb",  # Markdown pages and executed notebooks (as JAX, Flax and Optax)
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",  # Google-style docstrings
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "sphinx_copybutton",
    "sphinx_design",
]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = [
    "_build",
    "**.ipynb_checkpoints",
    "README.md",
    "guides/_cli_help.md",  # included by guides/cli.md
    "_benchmarks_table.md",  # included by benchmarks.md
    "results/_study_snn_tables.md",  # included by results/study.md
    "_static/**",
]
templates_path = ["_templates"]

myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist", "substitution"]
myst_heading_anchors = 3
myst_substitutions = {"repo_url": REPO_URL, "version": release}

# Notebooks are stored executed; the site shows those outputs and never re-runs them.
nb_execution_mode = "off"
nb_merge_streams = True

# MathJax 3 ships with the docs (docs/_static/mathjax): the equations render offline too.
mathjax_path = "mathjax/tex-chtml.js"

autosummary_generate = True
autosummary_imported_members = True
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_format = "short"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_use_ivar = True  # "Attributes:" as a field list: no duplicate of autodoc's members


# -- HTML ----------------------------------------------------------------------------------------
html_theme = "sphinx_book_theme"
html_title = f"svebi_jax {release}"
html_static_path = ["_static"]
html_theme_options = {
    "repository_url": REPO_URL,
    "use_repository_button": True,
    "show_toc_level": 2,
    "navigation_with_keys": False,
}

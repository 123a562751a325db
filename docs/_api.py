"""Writes the API reference pages of the documentation: one page per public module.

Every public module of ``svebi_jax`` (no ``_`` in its dotted name) gets a page with its module
docstring and an ``autosummary`` table of its public names: its ``__all__``, or, for a module
without one, the functions and classes it defines. A name re-exported from another public
module is documented once, on the page of the module that defines it, and linked from the
others. ``docs/conf.py`` calls :func:`write_pages` before every build, so the reference follows
the code; ``tests/test_docs.py`` checks that every public name is in it.
"""

from __future__ import annotations

import importlib
import inspect
import pathlib
import pkgutil

PACKAGE = "svebi_jax"
# Modules that are commands, not library API (``python -m svebi_jax``).
SKIP = {"svebi_jax.__main__"}


def public_modules() -> list[str]:
    pkg = importlib.import_module(PACKAGE)
    names = [PACKAGE] + [
        m.name for m in pkgutil.walk_packages(pkg.__path__, PACKAGE + ".") if m.name not in SKIP
    ]
    return sorted(n for n in names if not any(p.startswith("_") for p in n.split(".")))


def public_names(modname: str) -> list[str]:
    """The module's ``__all__``, else the functions and classes it defines."""
    module = importlib.import_module(modname)
    names = getattr(module, "__all__", None)
    if names is not None:
        return [n for n in names if n != "__version__"]
    return sorted(
        n
        for n, obj in vars(module).items()
        if not n.startswith("_")
        and (inspect.isfunction(obj) or inspect.isclass(obj))
        and getattr(obj, "__module__", None) == modname
    )


def home_of(modname: str, name: str, documented: dict[str, list[str]]) -> str:
    """The module whose page documents ``modname.name`` (``modname`` unless re-exported)."""
    obj = getattr(importlib.import_module(modname), name, None)
    home = getattr(obj, "__module__", None) if obj is not None else None
    if (
        home
        and home != modname
        and home in documented
        and name in documented[home]
        and getattr(importlib.import_module(home), name, None) is obj
    ):
        return home
    return modname


def _is_module_page(modname: str, name: str, documented: dict[str, list[str]]) -> bool:
    obj = getattr(importlib.import_module(modname), name, None)
    return inspect.ismodule(obj) and obj.__name__ in documented


def _page(modname: str, names: list[str], documented: dict[str, list[str]]) -> str:
    title = f"``{modname}``"
    lines = [title, "=" * len(title), "", f".. automodule:: {modname}", "   :no-members:", ""]
    submodules = [n for n in names if _is_module_page(modname, n, documented)]
    names = [n for n in names if n not in submodules]
    own = [n for n in names if home_of(modname, n, documented) == modname]
    other = [n for n in names if n not in own]
    if own:
        lines += [
            f".. currentmodule:: {modname}",
            "",
            ".. autosummary::",
            "   :toctree: _autosummary",
            "   :nosignatures:",
            "",
            *[f"   {n}" for n in own],
            "",
        ]
    if other:
        lines += ["Re-exported here, documented where they are defined:", ""]
        for n in other:
            home = home_of(modname, n, documented)
            lines.append(f"- :py:obj:`{modname}.{n} <{home}.{n}>`")
        lines.append("")
    if submodules:
        lines += ["Submodules:", ""]
        for n in submodules:
            lines.append(f"- :py:mod:`{modname}.{n}`")
        lines.append("")
    return "\n".join(lines)


def write_pages(outdir: pathlib.Path) -> dict[str, list[str]]:
    """Writes ``outdir/<module>.rst`` for every public module; returns ``{module: names}``."""
    outdir.mkdir(parents=True, exist_ok=True)
    documented = {m: public_names(m) for m in public_modules()}
    wanted = {f"{m}.rst" for m in documented}
    for old in outdir.glob("*.rst"):
        if old.name not in wanted:
            old.unlink()
    for modname, names in documented.items():
        path = outdir / f"{modname}.rst"
        text = _page(modname, names, documented)
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
    return documented

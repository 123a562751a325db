"""``python -m svebi_jax``: the ``svebi`` command line (see :mod:`svebi_jax.cli`)."""

from svebi_jax.cli import main

if __name__ == "__main__":
    raise SystemExit(main())

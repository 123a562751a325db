"""Scripts that reproduce the SVEBI paper's tables and figures (``python -m experiments.NAME``).

Each experiment is thin: a config (its command line, validated before any work), a pipeline
of stages shared by every experiment (:mod:`experiments.common.stages`), and a report.
"""

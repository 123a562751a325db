"""Markdown pieces every experiment's ``report.md`` shares (Table 1, coverage, timings)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from experiments.common.methods import MethodKey

PaperRow = Callable[[MethodKey], "tuple[float, float] | None"]


def insdel_table(r: Mapping, key_of: Mapping[str, MethodKey], paper_row: PaperRow) -> list[str]:
    """Table 1 as Markdown lines: per-image mean AUCs (AUC of the mean curve in brackets),
    the paper's numbers where ``paper_row(key)`` gives them, and the maps' seconds."""
    lines = [
        "| method | insertion ↑ | deletion ↓ | paper insertion | paper deletion | s (maps)¹ |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in r["insertion_deletion"].items():
        paper = paper_row(key_of[name])
        ps = (f"{paper[0]:.4f}", f"{paper[1]:.4f}") if paper else ("", "")
        lines.append(
            f"| {name} | {row['insertion']:.4f} ({row['insertion_auc_of_mean_curve']:.4f}) | "
            f"{row['deletion']:.4f} ({row['deletion_auc_of_mean_curve']:.4f}) | {ps[0]} | {ps[1]} "
            f"| {row['seconds_maps']:.1f} |"
        )
    lines += [
        "",
        "¹ Seconds to compute the maps; all SVEBI rows come from one shared forward pass, so "
        "they show that pass's time.",
    ]
    return lines


def coverage_table(r: Mapping, key_of: Mapping[str, MethodKey]) -> list[str]:
    """SVEBI's coverage section: the share of images whose class has a relevant filter."""
    lines = [
        "### SVEBI coverage",
        "",
        "An image whose predicted class has no relevant filter in a layer gets an all-zero map "
        "from that layer: the table above scores it anyway (its pixels enter in RISE's "
        "tie order). Coverage is the share of images with at least one relevant filter; the "
        "covered-only AUCs leave the others out.",
        "",
        "| method | coverage | insertion (covered) | deletion (covered) |",
        "|---|---|---|---|",
    ]
    for name, row in r["insertion_deletion"].items():
        if key_of[name].is_svebi:
            lines.append(
                f"| {name} | {row['coverage']:.3f} | {row['insertion_covered']:.4f} | "
                f"{row['deletion_covered']:.4f} |"
            )
    return lines


def ranking(r: Mapping, key_of: Mapping[str, MethodKey]) -> list[str]:
    """The best SVEBI variant and the first rows of the ranking by insertion."""
    table = r["insertion_deletion"]
    best = max((k for k in table if key_of[k].is_svebi), key=lambda k: table[k]["insertion"])
    ranked = sorted(table, key=lambda k: -table[k]["insertion"])
    return [
        f"Best SVEBI variant by insertion: **{best}** ({table[best]['insertion']:.4f}). "
        "Ranking by insertion: " + " > ".join(ranked[:6]) + " > …"
    ]


def timings(r: Mapping) -> list[str]:
    """``## Wall time per stage (s)`` and one line per stage."""
    return ["## Wall time per stage (s)", ""] + [
        f"- {k}: {v:.1f}" for k, v in r["timings_s"].items()
    ]

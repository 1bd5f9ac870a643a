"""The comparison table and the paper's central claim, as measured numbers."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ..circuit import Circuit
from ..curves import UNIT_GRANULARITIES, effective_masks
from ..fsutil import atomic_write, write_json
from ..granularity import GRANULARITIES
from ..run_files import CIRCUITS_DIR, COMPARE_TEXT_FILE

#: Columns of the table: granularity, header (Granularity.column).
COUNT_COLUMNS = tuple((g.name, g.column) for g in GRANULARITIES.values() if g.column)
UNIT_LABELS = {g: GRANULARITIES[g].label for g in UNIT_GRANULARITIES}


def _label(row: dict[str, Any]) -> str:
    return row["method"] + (f" ({row['variant']})" if row.get("variant") else "")


def _count(row: dict[str, Any], g: str) -> str:
    kept, total = row["kept"][g], row["total"][g]
    text = f"{kept:.0f}" if isinstance(kept, int) or float(kept).is_integer() else f"{kept:.1f}"
    return f"{text} ({100 * kept / total:.1f}%)"


def _metric(row: dict[str, Any], key: str) -> str:
    value = float(row["metrics"][key])
    spread = row.get("spread", {}).get(key)
    return f"{value:.3f}" + (f"±{spread:.3f}" if spread is not None else "")


def compare_table(rows: list[dict[str, Any]]) -> str:
    """One Markdown table: sizes (count and % of the model), metrics, cost per method."""
    header = [
        "method",
        *[h for _, h in COUNT_COLUMNS],
        "units kept",
        "KL",
        "norm. faith.",
        "accuracy",
        "wall s",
        "peak MB",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [
            _label(row),
            *[_count(row, g) for g, _ in COUNT_COLUMNS],
            f"{100 * row['fraction_kept']:.1f}%",
            _metric(row, "kl"),
            _metric(row, "normalized_faithfulness"),
            _metric(row, "accuracy"),
            f"{row['wall_s']:.1f}",
            f"{row['peak_mb']:.0f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    notes = (
        "units kept: attention + MLP neurons kept with all their ancestors, over all of them. "
        "random: mean±std over draws; its wall time is per circuit. attribution: wall time "
        "includes scoring. peak MB: peak RSS of the process during the row (CPU) or peak "
        "CUDA memory allocated."
    )
    return "\n".join(lines) + "\n\n" + notes


def central_claim(multi: Circuit, coarse: Circuit) -> dict[str, Any]:
    """Of the neurons inside the heads and MLP blocks the coarse circuit keeps, how many
    the multi-granular circuit drops, and at what faithfulness each circuit is."""
    m, c = effective_masks(multi.masks), effective_masks(coarse.masks)
    per: dict[str, dict[str, float]] = {}
    for g in (*UNIT_GRANULARITIES, "all"):
        names = UNIT_GRANULARITIES if g == "all" else (g,)
        inside = sum(int(c[n].sum()) for n in names)
        kept = sum(int((c[n] & m[n]).sum()) for n in names)
        per[g] = {
            "inside_coarse": inside,
            "kept_by_multi": kept,
            "dropped_by_multi": inside - kept,
            "dropped_fraction": (inside - kept) / inside if inside else math.nan,
            "multi_total": sum(int(m[n].sum()) for n in names),
            "multi_outside_coarse": sum(int((m[n] & ~c[n]).sum()) for n in names),
        }
    faith = {
        "multi-granular": float(multi.metrics["normalized_faithfulness"]),
        "coarse": float(coarse.metrics["normalized_faithfulness"]),
    }
    return {
        "neurons": per,
        "normalized_faithfulness": faith,
        "kl": {"multi-granular": float(multi.metrics["kl"]), "coarse": float(coarse.metrics["kl"])},
        "heads": {
            "multi-granular": multi.kept("attention_head"),
            "coarse": coarse.kept("attention_head"),
        },
        "mlp_blocks": {
            "multi-granular": multi.kept("mlp_block"),
            "coarse": coarse.kept("mlp_block"),
        },
        "multi_equal_or_better": faith["multi-granular"] >= faith["coarse"],
        "faithfulness_matched": abs(faith["multi-granular"] - faith["coarse"])
        <= FAITHFULNESS_MATCH,
        "shown": claim_shown(per, faith, multi, coarse),
    }


#: Two circuits count as "at equal faithfulness" when their test faithfulness differs by
#: at most this (the issue's standard for the central claim).
FAITHFULNESS_MATCH = 0.03


def claim_shown(
    per: dict[str, dict[str, float]], faith: dict[str, float], multi: Circuit, coarse: Circuit
) -> bool:
    """The central claim holds on this pair: at equal (within FAITHFULNESS_MATCH) or
    better faithfulness, multi-granular keeps at most half of the neurons inside the
    coarse circuit's components, and no more MLP blocks."""
    equal = faith["multi-granular"] >= faith["coarse"] - FAITHFULNESS_MATCH
    half = per["all"]["dropped_fraction"] >= 0.5
    blocks = multi.kept("mlp_block") <= coarse.kept("mlp_block")
    return bool(equal and half and blocks)


def claim_text(claim: dict[str, Any]) -> str:
    if not claim:
        return "central claim: not measured (the coarse method was not run)"
    n = claim["neurons"]
    f = claim["normalized_faithfulness"]
    k = claim["kl"]
    allc = n["all"]
    parts = ", ".join(
        f"{100 * n[g]['dropped_fraction']:.1f}% of {n[g]['inside_coarse']} {UNIT_LABELS[g]}"
        for g in UNIT_GRANULARITIES
    )
    if claim.get("faithfulness_matched"):
        verdict = f"at equal faithfulness (within {FAITHFULNESS_MATCH})"
    elif claim["multi_equal_or_better"]:
        verdict = "at better faithfulness"
    else:
        verdict = "but at LOWER faithfulness than the coarse circuit"
    if "shown" in claim:
        blocks = claim["mlp_blocks"]
        verdict += (
            f", MLP blocks {blocks['multi-granular']} vs {blocks['coarse']}; claim (at most "
            f"half the neurons, no more MLP blocks, faithfulness within {FAITHFULNESS_MATCH} "
            f"or better): {'SHOWN' if claim['shown'] else 'NOT shown'}"
        )
    return (
        f"Central claim, measured: of the {allc['inside_coarse']} neurons inside the heads and "
        f"MLP blocks the coarse circuit keeps, the multi-granular circuit drops "
        f"{allc['dropped_by_multi']} ({100 * allc['dropped_fraction']:.1f}%; {parts}), "
        f"{verdict}: normalized faithfulness {f['multi-granular']:.3f} (KL "
        f"{k['multi-granular']:.3f}) for multi-granular vs {f['coarse']:.3f} "
        f"(KL {k['coarse']:.3f}) for coarse. In all, multi-granular keeps "
        f"{allc['multi_total']} neurons "
        f"({allc['multi_outside_coarse']} of them outside the coarse circuit's components) "
        f"and {claim['heads']['multi-granular']} heads vs {claim['heads']['coarse']} for coarse."
    )


def write_outputs(
    out: Path, documents: dict[str, Any], text: str, circuits: dict[str, Circuit]
) -> list[Path]:
    """``out/NAME`` for each JSON document, ``out/compare.txt`` and one circuit file per
    discovered method under ``out/circuits/``."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in documents.items():
        written.append(write_json(out / name, content, root=out))
    written.append(atomic_write(out / COMPARE_TEXT_FILE, text + "\n", root=out))
    for method, circuit in circuits.items():
        written.append(circuit.save(out / CIRCUITS_DIR / f"{method}.json", root=out))
    return written

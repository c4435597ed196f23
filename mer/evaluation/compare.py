"""Runs side by side: the seeds of one experiment (mean ± standard deviation), and any set of
run folders (`python -m mer compare`), each with its caveats (`mer.caveats`). Reads only the
runs' `summary.json` files."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from mer.caveats import recorded_caveats
from mer.evaluation.report import format_caveats

SCORES = ("uf1", "uar", "acc")
MEAN_OVER_SUBJECTS = "mean_over_subjects"
RUN_KEYS = ("dataset", "protocol", "parameters", "clips", "subjects")  # the same for every seed
CAVEAT_KEYS = (  # see mer.caveats: the same for every seed too
    "caveats",
    "optimistic",
    "test_inputs_use_annotations",
    "annotated_test_inputs",
    "annotation_only_reference",
)
PART_PREFIX = "part "  # columns of per-part scores in the comparison table


def _spread(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1; 0 for a single value)."""
    array = np.asarray(values, dtype=np.float64)
    return float(array.mean()), float(array.std(ddof=1)) if array.size > 1 else 0.0


def seed_summary(summaries: Mapping[int, dict]) -> tuple[pd.DataFrame, dict]:
    """Per-seed rows, and the mean ± standard deviation over seeds of every score.

    Args:
        summaries: each seed's `summary.json` content.

    Returns:
        (table, summary): one row per seed; and a summary with the same score keys as a single
        run's (`uf1`, `uar`, `acc`, `mean_over_subjects`, `parts`) holding means, plus `std`
        entries beside them, `seeds`, `parameters`, `dataset`, `protocol`, the caveats
        (`mer.caveats.summary_entries`), the annotation-only reference and the total time.
    """
    if not summaries:
        raise ValueError("no seed has a summary")
    seeds = list(summaries)
    rows = []
    for seed, run in summaries.items():
        row = {"seed": seed, **{key: run[key] for key in SCORES}}
        row.update({f"subjects_{key}": run[MEAN_OVER_SUBJECTS][key] for key in SCORES})
        row["seconds"] = run.get("timings", {}).get("total_s")
        rows.append(row)
    runs = list(summaries.values())
    summary: dict = {"seeds": seeds, "std": {}, MEAN_OVER_SUBJECTS: {}}
    summary["mean_over_subjects_std"] = {}
    for key in SCORES:
        summary[key], summary["std"][key] = _spread([run[key] for run in runs])
        summary[MEAN_OVER_SUBJECTS][key], summary["mean_over_subjects_std"][key] = _spread(
            [run[MEAN_OVER_SUBJECTS][key] for run in runs]
        )
    parts = runs[0].get("parts", {})
    if parts:
        summary["parts"] = {
            part: {key: _spread([run["parts"][part][key] for run in runs])[0] for key in SCORES}
            for part in parts
        }
        summary["parts_std"] = {
            part: {key: _spread([run["parts"][part][key] for run in runs])[1] for key in SCORES}
            for part in parts
        }
    for key in (*RUN_KEYS, *CAVEAT_KEYS):
        if key in runs[0]:
            summary[key] = runs[0][key]
    summary["timings"] = {"total_s": round(sum(row["seconds"] or 0 for row in rows), 2)}
    return pd.DataFrame(rows), summary


def format_seed_summary(summary: dict) -> str:
    """One line per score family: pooled and mean over subjects, mean ± std over the seeds."""
    seeds = summary["seeds"]

    def line(scores: dict, spreads: dict) -> str:
        return "  ".join(f"{key.upper()} {scores[key]:.3f} ± {spreads[key]:.3f}" for key in SCORES)

    lines = [
        *format_caveats(summary.get("caveats", [])),
        f"Over {len(seeds)} seeds ({', '.join(map(str, seeds))}), mean ± standard deviation:",
        f"  pooled:            {line(summary, summary['std'])}",
        "  mean of subjects:  "
        + line(summary[MEAN_OVER_SUBJECTS], summary["mean_over_subjects_std"]),
    ]
    for part, scores in summary.get("parts", {}).items():
        lines.append(f"  part {part}: {line(scores, summary['parts_std'][part])}")
    return "\n".join(lines)


def load_run(run_dir: str | Path) -> dict:
    """The comparable figures of one run folder (a single run or a parent of seeds)."""
    run_dir = Path(run_dir)
    path = run_dir / "summary.json"
    if not path.is_file():
        raise ValueError(f"{run_dir}: no summary.json (not a finished run folder)")
    summary = json.loads(path.read_text())
    caveats = recorded_caveats(summary)
    reference = summary.get("annotation_only_reference", {})
    row = {
        "run": run_dir.name,
        "dataset": summary.get("dataset", ""),
        "seeds": len(summary.get("seeds", [])) or 1,
        "caveats": [caveat["label"] for caveat in caveats],
        "caveat_texts": {caveat["label"]: caveat["text"] for caveat in caveats},
        "optimistic": any(caveat["optimistic"] for caveat in caveats),
        "annotation_only_uf1": reference.get("uf1"),
    }
    spreads = summary.get("std", {})
    for key in SCORES:
        row[key] = summary[key]
        row[f"{key}_std"] = spreads.get(key, 0.0)
        row[f"subjects_{key}"] = summary[MEAN_OVER_SUBJECTS][key]
    for part, scores in summary.get("parts", {}).items():
        for key in ("uf1", "uar"):
            row[f"{PART_PREFIX}{part} {key.upper()}"] = scores[key]
    row["parameters"] = summary.get("parameters")
    row["seconds"] = summary.get("timings", {}).get("total_s")
    return row


def compare_runs(run_dirs: Sequence[str | Path]) -> pd.DataFrame:
    """One row per run folder, in the order given."""
    if not run_dirs:
        raise ValueError("give at least one run folder")
    return pd.DataFrame([load_run(run_dir) for run_dir in run_dirs])


def format_comparison(table: pd.DataFrame) -> str:
    """The comparison as aligned text: scores to 3 decimals, ± where runs have seeds."""
    shown = pd.DataFrame({"run": table["run"], "dataset": table["dataset"]})
    for key in SCORES:
        shown[key.upper()] = [
            f"{value:.3f}" + (f"±{spread:.3f}" if seeds > 1 else "")
            for value, spread, seeds in zip(
                table[key], table[f"{key}_std"], table["seeds"], strict=True
            )
        ]
    for key in SCORES:
        shown[f"subj {key.upper()}"] = table[f"subjects_{key}"].map("{:.3f}".format)
    for column in [column for column in table.columns if column.startswith(PART_PREFIX)]:
        shown[column] = table[column].map(lambda value: "" if pd.isna(value) else f"{value:.3f}")
    shown["params"] = table["parameters"].map(
        lambda value: "" if value is None or pd.isna(value) else f"{int(value):,}"
    )
    shown["time"] = table["seconds"].map(
        lambda value: "" if value is None or pd.isna(value) else f"{value / 60:.1f} min"
    )
    shown["seeds"] = table["seeds"]
    if table["annotation_only_uf1"].notna().any():
        shown["annot-only UF1"] = table["annotation_only_uf1"].map(
            lambda value: "" if pd.isna(value) else f"{value:.3f}"
        )
    shown["caveats"] = table["caveats"].map(lambda labels: ", ".join(labels) or "-")
    text = shown.to_string(index=False)
    sentences = {label: line for run in table["caveat_texts"] for label, line in run.items()}
    for label, sentence in sentences.items():  # each caveat spelled out once, below the table
        text += f"\n[{label}] {sentence}"
    return text

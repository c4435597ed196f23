"""Runs side by side: the seeds of one experiment (mean ± standard deviation), and any set of
run folders (`python -m mer compare`), each with its caveats (`mer.caveats`). Reads only the
runs' `summary.json` files. An AU detector's runs (`model.family: au_detector`, whose summary
holds `mean_f1`, not UF1/UAR) are set side by side by their mean and per-AU F1, and only with
each other."""

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
AU_REFERENCE = "mean_f1_all_present"  # every AU called present in every clip: the same per seed
AU_RUN_KEYS = (AU_REFERENCE, "threshold", "scoring")


def predicts_aus(summary: Mapping) -> bool:
    """Whether a run's (or a seeds parent's) summary is an AU detector's."""
    return "mean_f1" in summary


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
    if predicts_aus(next(iter(summaries.values()))):
        return _au_seed_summary(summaries)
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


def _au_seed_summary(summaries: Mapping[int, dict]) -> tuple[pd.DataFrame, dict]:
    """`seed_summary` of an AU detector's seeds: per seed its mean F1 and each AU's F1; the
    mean ± standard deviation of each (`mean_f1`, `std`, `per_au`, `per_au_std`)."""
    runs = list(summaries.values())
    aus = list(runs[0]["per_au"])
    rows = [
        {
            "seed": seed,
            "mean_f1": run["mean_f1"],
            **{f"f1_{au}": run["per_au"][au]["f1"] for au in aus},
            "seconds": run.get("timings", {}).get("total_s"),
        }
        for seed, run in summaries.items()
    ]
    summary: dict = {"seeds": list(summaries)}
    summary["mean_f1"], spread = _spread([run["mean_f1"] for run in runs])
    summary["std"] = {"mean_f1": spread}
    spreads = {au: _spread([run["per_au"][au]["f1"] for run in runs]) for au in aus}
    summary["per_au"] = {au: {"f1": mean} for au, (mean, _) in spreads.items()}
    summary["per_au_std"] = {au: {"f1": deviation} for au, (_, deviation) in spreads.items()}
    for key in (*RUN_KEYS, *AU_RUN_KEYS, "family", *CAVEAT_KEYS):
        if key in runs[0]:
            summary[key] = runs[0][key]
    summary["timings"] = {"total_s": round(sum(row["seconds"] or 0 for row in rows), 2)}
    return pd.DataFrame(rows), summary


def format_seed_summary(summary: dict) -> str:
    """One line per score family: pooled and mean over subjects, mean ± std over the seeds (an
    AU detector's: the mean F1, then each AU's)."""
    seeds = summary["seeds"]
    if predicts_aus(summary):
        per_au = summary["per_au"]
        return "\n".join(
            [
                *format_caveats(summary.get("caveats", [])),
                f"Over {len(seeds)} seeds ({', '.join(map(str, seeds))}), mean ± standard "
                "deviation:",
                f"  mean F1 over {len(per_au)} AUs: {summary['mean_f1']:.3f} ± "
                f"{summary['std']['mean_f1']:.3f} (every AU called present in every clip: "
                f"{summary[AU_REFERENCE]:.3f})",
                *(
                    f"  {au:<5} F1 {scores['f1']:.3f} ± {summary['per_au_std'][au]['f1']:.3f}"
                    for au, scores in per_au.items()
                ),
            ]
        )

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
    if predicts_aus(summary):
        return _au_run(run_dir, summary)
    reference = summary.get("annotation_only_reference", {})
    row = {**_run_row(run_dir, summary), "annotation_only_uf1": reference.get("uf1")}
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


def _run_row(run_dir: Path, summary: dict) -> dict:
    """What every run's row starts with: its name, dataset, seeds and caveats."""
    caveats = recorded_caveats(summary)
    return {
        "run": run_dir.name,
        "dataset": summary.get("dataset", ""),
        "seeds": len(summary.get("seeds", [])) or 1,
        "caveats": [caveat["label"] for caveat in caveats],
        "caveat_texts": {caveat["label"]: caveat["text"] for caveat in caveats},
        "optimistic": any(caveat["optimistic"] for caveat in caveats),
    }


def _au_run(run_dir: Path, summary: dict) -> dict:
    """`load_run` of an AU detector's run: mean F1 (± over seeds), its all-present reference,
    and each AU's F1 (`F1 AU<n>` columns)."""
    row = _run_row(run_dir, summary)
    row["mean_f1"] = summary["mean_f1"]
    row["mean_f1_std"] = summary.get("std", {}).get("mean_f1", 0.0)
    row[AU_REFERENCE] = summary[AU_REFERENCE]
    for au, scores in summary["per_au"].items():
        row[f"F1 {au}"] = scores["f1"]
    row["parameters"] = summary.get("parameters")
    row["seconds"] = summary.get("timings", {}).get("total_s")
    return row


def compare_runs(run_dirs: Sequence[str | Path]) -> pd.DataFrame:
    """One row per run folder, in the order given.

    Raises:
        ValueError: no run folder, or AU detectors' runs among classifiers' (naming them).
    """
    if not run_dirs:
        raise ValueError("give at least one run folder")
    rows = [load_run(run_dir) for run_dir in run_dirs]
    detectors = [row["run"] for row in rows if "mean_f1" in row]
    if detectors and len(detectors) < len(rows):
        raise ValueError(
            f"compare sets runs of one kind side by side: {', '.join(detectors)} "
            f"{'is an AU detector' if len(detectors) == 1 else 'are AU detectors'} (mean F1), "
            "the others classifiers (UF1/UAR); compare each kind on its own"
        )
    return pd.DataFrame(rows)


def _with_spread(table: pd.DataFrame, key: str) -> list[str]:
    """A score column to 3 decimals, with ± its spread where a run has several seeds."""
    return [
        f"{value:.3f}" + (f"±{spread:.3f}" if seeds > 1 else "")
        for value, spread, seeds in zip(
            table[key], table[f"{key}_std"], table["seeds"], strict=True
        )
    ]


def format_comparison(table: pd.DataFrame) -> str:
    """The comparison as aligned text: scores to 3 decimals, ± where runs have seeds (AU
    detectors: the mean F1, its all-present reference and each AU's F1)."""
    shown = pd.DataFrame({"run": table["run"], "dataset": table["dataset"]})
    if "mean_f1" in table:
        shown["mean F1"] = _with_spread(table, "mean_f1")
        shown["all present"] = table[AU_REFERENCE].map("{:.3f}".format)
        columns = [column for column in table.columns if column.startswith("F1 AU")]
    else:
        for key in SCORES:
            shown[key.upper()] = _with_spread(table, key)
        for key in SCORES:
            shown[f"subj {key.upper()}"] = table[f"subjects_{key}"].map("{:.3f}".format)
        columns = [column for column in table.columns if column.startswith(PART_PREFIX)]
    for column in columns:
        shown[column] = table[column].map(lambda value: "" if pd.isna(value) else f"{value:.3f}")
    shown["params"] = table["parameters"].map(
        lambda value: "" if value is None or pd.isna(value) else f"{int(value):,}"
    )
    shown["time"] = table["seconds"].map(
        lambda value: "" if value is None or pd.isna(value) else f"{value / 60:.1f} min"
    )
    shown["seeds"] = table["seeds"]
    if "annotation_only_uf1" in table and table["annotation_only_uf1"].notna().any():
        shown["annot-only UF1"] = table["annotation_only_uf1"].map(
            lambda value: "" if pd.isna(value) else f"{value:.3f}"
        )
    shown["caveats"] = table["caveats"].map(lambda labels: ", ".join(labels) or "-")
    text = shown.to_string(index=False)
    sentences = {label: line for run in table["caveat_texts"] for label, line in run.items()}
    for label, sentence in sentences.items():  # each caveat spelled out once, below the table
        text += f"\n[{label}] {sentence}"
    return text

"""`python -m mer architecture`: figures of the configured networks, drawn from the built model.

Each config is built (not trained) at its own input shape, exactly as `--summary` and training
build it, and its layer graph is drawn (`mer.evaluation.architecture`), so the figures in `img/`
are regenerated from the code instead of drawn by hand:

    python -m mer architecture --out img/
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mer.config import CONFIG_DIR, PROJECT_ROOT, load_config, resolve_path

DEFAULT_CONFIGS = {  # config -> the system it describes
    "me_model.yaml": "MLSP 2024 (ME_model.py)",
    "dual_branch_au.yaml": "dual-branch 3D-CNN + AU (dual_branch_3dcnn_au.py)",
}


def _shown(path: Path) -> str:
    """A config path as the README writes it: relative to the project when inside it."""
    try:
        return str(path.resolve().relative_to(PROJECT_ROOT))
    except ValueError:
        return str(path)


def write_architecture(config_path: str | Path, out_dir: str | Path, label: str = "") -> Path:
    """Builds the config's model and writes `architecture_<config name>.png` into out_dir."""
    from mer.evaluation.architecture import draw_architecture
    from mer.models import model_family
    from mer.training.loso import build_model

    config_path = Path(config_path)
    config = load_config(config_path)
    model = build_model(config)
    inputs = ", ".join(f"{tensor.name} {tuple(tensor.shape[1:])}" for tensor in model.inputs)
    if model_family(config.model.family).predicts == "aus":  # an AU detector
        outputs = f"{model.outputs[0].shape[-1]} AUs"
    else:
        outputs = f"{len(config.data.classes)} classes"
    title = (
        f"{label or config_path.stem}\ninputs {inputs}; {outputs}; "
        f"{model.count_params():,} parameters\n(drawn by `python -m mer architecture` from "
        f"{_shown(config_path)})"
    )
    target = Path(out_dir) / f"architecture_{config_path.stem}.png"
    draw_architecture(model, target, title=title)
    return target


def architecture_command(arguments: argparse.Namespace) -> int:
    """Writes one figure per config (default: the two published systems)."""
    chosen = arguments.config or list(DEFAULT_CONFIGS)
    for name in chosen:
        path = resolve_path(name)
        if not path.is_file():
            path = CONFIG_DIR / name
        target = write_architecture(path, arguments.out, DEFAULT_CONFIGS.get(path.name, ""))
        print(f"{path.name}: {target}")
    return 0

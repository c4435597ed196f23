"""`python -m mer bench --profile`: where a training step's time goes, by layer, pass and op.

TensorFlow's profiler records a few training steps; its trace (an XSpace protobuf) is read here
and each op of the training function is given to the model's top-level layer whose name scope
holds it: forward ops under the model's scope, gradient ops under Keras's `gradient_tape/`
scope; ops of neither go under their first scope's name (the optimiser's update under `adam`,
the loss under `compile_loss`, ...), or under `train_step` if they have none. Ops that run at
the same time on TensorFlow's inter-op threads each count their whole duration, so the shares
are of the summed op time, not of the wall clock; `profile_wall_ms_per_step` is the wall
clock, profiler overhead included.
"""

from __future__ import annotations

import collections
import re
import tempfile
import time
from pathlib import Path

import keras

TRAINING_FUNCTION = "StatefulPartitionedCall/"  # the scope of the ops of Keras's train step
GRADIENT_SCOPE = "gradient_tape"


def attribute_op(event_name: str, layer_names: set[str]) -> tuple[str, str, str] | None:
    """(part, pass, op type) of one profiler event of the training function, else None.

    `event_name` is TensorFlow's "scope/.../op_name:OpType". TensorFlow makes scope names
    unique with a `_N` suffix (`branch5_conv_1`), which is dropped to find the layer.
    """
    if not event_name.startswith(TRAINING_FUNCTION) or ":" not in event_name:
        return None
    path, op_type = event_name[len(TRAINING_FUNCTION):].rsplit(":", 1)
    scopes = path.split("/")
    direction = "forward"
    if scopes[0] == GRADIENT_SCOPE:
        direction, scopes = "backward", scopes[1:]
    for scope in scopes[:-1]:  # the last component is the op's own name
        for name in (scope, re.sub(r"_\d+$", "", scope)):
            if name in layer_names:
                return name, direction, op_type
    part = re.sub(r"_\d+$", "", scopes[0]) if len(scopes) > 1 else "train_step"
    return part, direction, op_type


def op_totals(events: list[tuple[str, float]], layer_names: set[str]) -> collections.Counter:
    """Seconds per (part, pass, op type) of the training step's ops. `events`: (event name,
    seconds)."""
    totals: collections.Counter = collections.Counter()
    for name, seconds in events:
        key = attribute_op(name, layer_names)
        if key is not None:
            totals[key] += seconds
    if not totals:
        raise ValueError(
            "the profile holds no op of the training step: is it compiled by XLA? "
            "(--set train.jit_compile=false)"
        )
    return totals


def part_shares(totals: collections.Counter) -> dict[str, float]:
    """Each part's share of the summed op time (both passes, every op), largest first."""
    parts: collections.Counter = collections.Counter()
    for (part, _, _), seconds in totals.items():
        parts[part] += seconds
    total = sum(parts.values())
    return {part: round(seconds / total, 4) for part, seconds in parts.most_common()}


def summarize_ops(totals: collections.Counter, steps: int, min_share: float = 0.005) -> list[dict]:
    """Op time per (part, pass, op type), largest first; those under `min_share` of the summed
    op time go together into one last `other` row."""
    total = sum(totals.values())
    rows, rest = [], 0.0
    for (part, direction, op_type), seconds in totals.most_common():
        if seconds / total < min_share:
            rest += seconds
            continue
        rows.append(_row(part, direction, op_type, seconds, steps, total))
    if rest:
        rows.append(_row("other", "both", "below 0.5 % each", rest, steps, total))
    return rows


def _row(part: str, direction: str, op_type: str, seconds: float, steps: int, total: float):
    return {
        "part": part,
        "pass": direction,
        "op": op_type,
        "ms_per_step": round(1000 * seconds / steps, 3),
        "share": round(seconds / total, 4),
    }


def profile_training(model: keras.Model, batches, steps: int) -> dict:
    """One epoch of `batches` (`steps` steps) under TensorFlow's profiler; its op table."""
    import tensorflow as tf
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    with tempfile.TemporaryDirectory(prefix="mer-profile-") as directory:
        tf.profiler.experimental.start(directory)
        start = time.perf_counter()
        try:
            model.fit(batches, epochs=1, verbose=0, shuffle=False)
        finally:
            seconds = time.perf_counter() - start
            tf.profiler.experimental.stop()
        space = xplane_pb2.XSpace()
        space.ParseFromString(next(Path(directory).rglob("*.xplane.pb")).read_bytes())
    events = []
    for plane in space.planes:
        names = {key: metadata.name for key, metadata in plane.event_metadata.items()}
        for line in plane.lines:
            events += [(names.get(event.metadata_id, ""), event.duration_ps / 1e12)
                       for event in line.events]
    totals = op_totals(events, {layer.name for layer in model.layers})
    return {
        "profile_wall_ms_per_step": round(1000 * seconds / steps, 1),
        "profile_parts": part_shares(totals),
        "step_profile": summarize_ops(totals, steps),
    }

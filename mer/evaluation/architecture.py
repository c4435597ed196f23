"""A figure of a functional Keras model, drawn from its layer graph with matplotlib.

Drawn from the built model itself (layers, connections, output shapes, parameters), so the
figure cannot drift from the code (`python -m mer architecture`). Activations, dropout,
normalisation and pooling (2-D or 3-D) that directly follow a layer are written inside that
layer's box; parallel paths (the two branches, the two attention maps) are drawn side by side.
The blocks of the 2-D families are drawn as one box each (an Inception block, CBAM), not opened
up. Needs neither pydot nor graphviz. Takes any model object with Keras 3's functional graph;
imports nothing from `mer.models`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

# Layers written inside the box of the layer they follow.
FOLLOWERS = frozenset(
    {
        "LeakyReLU",
        "ReLU",
        "Activation",
        "Dropout",
        "BatchNormalization",
        "MaxPooling2D",
        "AveragePooling2D",
        "MaxPooling3D",
        "AveragePooling3D",
    }
)
COLORS = {
    "input": "#d9d9d9",
    "conv": "#9ecae1",
    "merge": "#fdd0a2",
    "attention": "#fcbba1",
    "recurrent": "#c7e9c0",
    "dense": "#dadaeb",
    "output": "#fdae6b",
}
BOX_WIDTH = 3.6  # data units; one unit is drawn as 0.9 inch
ROW_HEIGHT = 1.0
COLUMN_SPACING = 4.4
INCH_PER_UNIT = 0.9


def _category(layer) -> str:
    kind = type(layer).__name__
    if kind == "InputLayer":
        return "input"
    if kind.startswith(("Conv", "Inception")):
        return "conv"
    if kind in ("Concatenate", "Multiply", "Add", "Reshape", "Flatten", "SimilarityFusion"):
        return "merge"
    if "Attention" in kind or kind.startswith("CBAM"):
        return "attention"
    if kind in ("GRU", "LSTM", "SimpleRNN", "Bidirectional"):
        return "recurrent"
    if kind == "Activation" or getattr(layer, "name", "") == "logits":
        return "output"
    return "dense"


def describe(layer) -> str:
    """A short text for one layer: its kind and its main hyperparameters."""
    kind = type(layer).__name__
    config = layer.get_config()

    def cube(values) -> str:
        values = tuple(values) if isinstance(values, Sequence) else (values,) * 3
        return "×".join(str(value) for value in values)

    if kind.startswith("Conv"):
        return f"{kind} {config['filters']}, {cube(config['kernel_size'])}"
    if kind in ("Dense", "GRU", "LSTM", "SimpleRNN"):
        return f"{kind} {config['units']}"
    if "Pooling" in kind:  # a global pooling has no size
        sizes = f" {cube(config['pool_size'])}" if "pool_size" in config else ""
        return kind.replace("Pooling", "Pool") + sizes
    if kind == "Dropout":
        return f"Dropout {config['rate']:g}"
    if kind == "LeakyReLU":
        return f"LeakyReLU {config['negative_slope']:g}"
    if kind == "Activation":
        return str(config["activation"])
    if kind == "Reshape":
        return f"Reshape {tuple(config['target_shape'])}"
    if kind == "ChannelAttention":
        return f"ChannelAttention ({config['mode']}, /{config['reduction']})"
    if kind == "MultiScaleMultiHeadAttention":
        return f"multi-scale multi-head attention, {config['heads']} heads"
    if kind == "MultiHeadAttention":
        return f"MultiHeadAttention {config['num_heads']} heads"
    if kind == "Inception2D":  # four paths: 1×1; 1×1 → 3×3; 1×1 → 5×5; pool → 1×1
        return f"Inception 4×{config['filters']} (1, 3, 5, pool)"
    if kind == "CBAM2D":
        size = config["kernel_size"]
        return f"CBAM (/{config['reduction']}, spatial {size}×{size})"
    if kind == "SimilarityFusion":
        return f"concatenate; loss + {config['cosine_weight']:g}·(1 − cos)"
    if kind == "InputLayer":
        return "Input"
    return kind


def _shape(layer) -> str:
    """The layer's output shape without the batch; each output's, for a layer with several."""
    outputs = layer.output if isinstance(layer.output, (list, tuple)) else [layer.output]
    return " + ".join(
        "(" + ", ".join(str(size) for size in tuple(output.shape[1:])) + ")" for output in outputs
    )


def layer_graph(model) -> tuple[list, dict[str, list[str]]]:
    """The model's layers in order and, per layer name, the names of the layers feeding it."""
    layers = list(model.layers)
    names = {layer.name for layer in layers}
    parents = {}
    for layer in layers:
        feeding = []
        for node in layer._inbound_nodes:
            for tensor in node.input_tensors:
                name = tensor._keras_history.operation.name
                if name in names and name not in feeding:
                    feeding.append(name)
        parents[layer.name] = feeding
    return layers, parents


def _boxes(model) -> tuple[list[dict], dict[str, list[str]]]:
    """Boxes (a layer plus the followers written inside it) and their parent boxes."""
    layers, parents = layer_graph(model)
    children: dict[str, list[str]] = {layer.name: [] for layer in layers}
    for name, feeding in parents.items():
        for parent in feeding:
            children[parent].append(name)
    owner: dict[str, str] = {}
    boxes: dict[str, dict] = {}
    for layer in layers:
        feeding = parents[layer.name]
        if (
            type(layer).__name__ in FOLLOWERS
            and len(feeding) == 1
            and len(children[feeding[0]]) == 1
            and owner.get(feeding[0]) is not None
        ):
            box = boxes[owner[feeding[0]]]
            box["followers"].append(layer)
            owner[layer.name] = box["name"]
            continue
        owner[layer.name] = layer.name
        boxes[layer.name] = {"name": layer.name, "layer": layer, "followers": []}
    box_parents = {
        name: list(dict.fromkeys(owner[parent] for parent in parents[name])) for name in boxes
    }
    return list(boxes.values()), box_parents


def draw_architecture(model, path: str | os.PathLike[str], *, title: str = "") -> None:
    """Draws the model's layer graph, top to bottom, as a PNG.

    Each box: the layer's name and kind, the layers written inside it, the output shape
    (without the batch) and the parameter count of the box's layers.

    Args:
        model: a built functional Keras model.
        path: destination PNG (parent folders are created).
        title: figure title (default: the model's name, inputs and parameter count).

    Raises:
        ValueError: the model has no layer graph (a subclassed model).
    """
    if not hasattr(model, "inputs") or not getattr(model, "layers", None):
        raise ValueError(f"draw_architecture needs a built functional model, got {model!r}")
    boxes, parents = _boxes(model)
    depth: dict[str, int] = {}
    for box in boxes:  # layers come in topological order
        depth[box["name"]] = 1 + max((depth[parent] for parent in parents[box["name"]]), default=-1)
    rows: dict[int, list[str]] = {}
    for box in boxes:
        rows.setdefault(depth[box["name"]], []).append(box["name"])
    x: dict[str, float] = {}
    for level in sorted(rows):
        names = rows[level]
        names.sort(
            key=lambda name: (
                np.mean([x[parent] for parent in parents[name]]) if parents[name] else 0.0
            )
        )  # stable: ties keep the layer order
        for index, name in enumerate(names):
            x[name] = (index - (len(names) - 1) / 2) * COLUMN_SPACING
    widest = max(len(names) for names in rows.values())
    width_units = (widest - 1) * COLUMN_SPACING + BOX_WIDTH + 0.6
    height_units = len(rows) * ROW_HEIGHT + 0.4
    figure = Figure(
        figsize=(max(width_units, 7.0) * INCH_PER_UNIT, height_units * INCH_PER_UNIT + 0.6),
        dpi=100,
        layout="constrained",
    )
    axes = figure.add_subplot()
    axes.set_xlim(-max(width_units, 7.0) / 2, max(width_units, 7.0) / 2)
    axes.set_ylim(-height_units + 0.2, 0.2)
    axes.set_axis_off()

    def y(name: str) -> float:
        return -depth[name] * ROW_HEIGHT - ROW_HEIGHT / 2

    box_height = ROW_HEIGHT * 0.62
    for box in boxes:
        name, layer = box["name"], box["layer"]
        members = [layer, *box["followers"]]
        last = members[-1]
        params = sum(member.count_params() for member in members)
        lines = [f"{name}: {describe(layer)}"]
        if box["followers"]:
            lines.append("+ " + ", ".join(describe(member) for member in box["followers"]))
        lines.append(_shape(last) + (f"  ·  {params:,} params" if params else ""))
        axes.add_patch(
            FancyBboxPatch(
                (x[name] - BOX_WIDTH / 2, y(name) - box_height / 2),
                BOX_WIDTH,
                box_height,
                boxstyle="round,pad=0.02,rounding_size=0.08",
                facecolor=COLORS[_category(layer)],
                edgecolor="0.3",
                linewidth=0.8,
            )
        )
        axes.text(x[name], y(name), "\n".join(lines), ha="center", va="center", fontsize=7.5)
        for parent in parents[name]:
            axes.annotate(
                "",
                xy=(x[name], y(name) + box_height / 2),
                xytext=(x[parent], y(parent) - box_height / 2),
                arrowprops={"arrowstyle": "-|>", "color": "0.35", "linewidth": 0.8},
            )
    inputs = ", ".join(f"{tensor.name} {tuple(tensor.shape[1:])}" for tensor in model.inputs)
    figure.suptitle(
        title or f"{model.name}\ninputs {inputs}; {model.count_params():,} parameters",
        fontsize=10,
    )
    destination = os.fspath(path)
    os.makedirs(os.path.dirname(destination) or ".", exist_ok=True)
    FigureCanvasAgg(figure)
    figure.savefig(destination, format="png")

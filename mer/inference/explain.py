"""`python -m mer explain`: Grad-CAM of a clip, as an image strip (and, for frame inputs, an
animated GIF).

Grad-CAM (Selvaraju et al., 2017) on 2-D and 3-D feature maps: the gradient of the class logit
(an AU detector's: the AU's, before its sigmoid) with respect to a layer's output ([time,]
height, width, channels) is averaged over time and space into one weight per channel; the map
is the ReLU of the weighted channel sum, scaled to [0, 1] and resized to the input's frames and
pixels.

Which layer, by default: per model input, the last conv layer (Conv2D, Conv3D) or conv block
whose output depends on that input alone, since from the first layer that mixes two inputs on
the positions are no longer positions of one image; for a clip input, the last whose output
still has a time axis, so that the map moves with the frames. A conv block is a layer holding
convs that changes its input's shape (Dual-ATME's Inception blocks); an attention gate such as
CBAM holds a conv too but only reweights its input, so it is passed over. This picks
`merge_conv` of a one-input MLSP model; `branch5_conv` (the face) and `branch3_conv` (the
AU-region crops) of the two-stream one, whose region box is drawn on the face frames;
`aars_inception2` and `hars_inception2` of Dual-ATME, the concatenated output of each branch's
last Inception block; `p3d_res4_block1` of the AU detector (the last block that changes the
shape; its res5 blocks are 2-D, time pooled to 1 before them).

What is drawn: a clip input (frames) as a row of frames with its Grad-CAM below, and a GIF of
the overlays frame by frame; an image input (a flow image) as one row: each of its channels
(u, v, magnitude for the flow inputs), each scaled to its own range in grey, and the Grad-CAM
over the magnitude channel (the first channel without one). Such a model has no GIF. An input
that is neither (FMER's landmark patches) is fed as it is and named in the title, not drawn:
FMER is explained on its AU frames.

Gradients: Keras 3 has no backend-independent gradient call, so `class_gradients` has one
short path per backend: TensorFlow (GradientTape; the default backend, exercised by the test
suite), JAX (`jax.grad`, jitted; its first call compiles for ~20 s on 2 cores) and PyTorch
(`torch.autograd.grad`); the last two were checked by hand, not by the suite.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

import cv2
import keras
import numpy as np
import pandas as pd
from keras import ops
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mer.bundle import Bundle, load_bundle
from mer.config import ConfigError
from mer.data.inputs import input_type, selected_frames
from mer.data.inputs.au_regions import region_crops
from mer.inference.predict import (
    clip_manifest,
    joined_aus,
    predict_streams,
    preprocess_clips,
    with_predicted_aus,
)
from mer.models import DEFAULT_FAMILY, model_family

CONV_LAYERS = (keras.layers.Conv2D, keras.layers.Conv3D)
HEAT_ALPHA = 0.45  # weight of the heat map over the frame
STRIP_WIDTH = 2400  # the strip's frames are scaled to fit about this many pixels
TILE_LIMITS = (96, 192)  # smallest and largest displayed frame side, pixels
GIF_FRAME_MS = 250
CLIP_RANK, IMAGE_RANK = 5, 4  # (batch, frames, height, width, channels); (batch, H, W, C)


def conv_like(layer: keras.layers.Layer) -> bool:
    """A conv layer, or a conv block: a layer holding convs whose output shape differs from its
    input's (see the module docstring), with a spatial map as its output."""
    node = layer._inbound_nodes[0]
    output = tuple(node.output_tensors[0].shape)
    if len(output) not in (IMAGE_RANK, CLIP_RANK):
        return False
    if isinstance(layer, CONV_LAYERS):
        return True
    holds_convs = any(
        isinstance(inner, CONV_LAYERS) for inner in layer._flatten_layers(include_self=False)
    )
    return holds_convs and tuple(node.input_tensors[0].shape) != output


def drawn_inputs(model: keras.Model) -> list[int]:
    """The positions of the inputs a strip draws: those of frames or images (all of one kind);
    others (FMER's landmark patches) are fed as they are, not drawn.

    Raises:
        ValueError: a model with no frame or image input, or with both kinds.
    """
    drawn = [
        index
        for index, tensor in enumerate(model.inputs)
        if len(tensor.shape) in (CLIP_RANK, IMAGE_RANK)
    ]
    if len({len(model.inputs[index].shape) for index in drawn}) != 1:
        shapes = [tuple(tensor.shape[1:]) for tensor in model.inputs]
        raise ValueError(
            "explain draws a model's frame inputs (frames, height, width, channels) or its image "
            f"inputs (height, width, channels), one kind: inputs {shapes}"
        )
    return drawn


def default_layers(model: keras.Model) -> list[str]:
    """The layer(s) to explain: per drawn input (`drawn_inputs`), the last conv layer or block
    whose output depends on that input alone and, for a clip input, still has a time axis (see
    the module docstring).

    Raises:
        ValueError: an input that no such layer reads alone, naming it.
    """
    candidates = [
        layer
        for layer in model.layers
        if len(layer._inbound_nodes) == 1  # a shared layer has no one output to explain
        and not isinstance(layer, keras.layers.InputLayer)
        and conv_like(layer)
    ]
    chosen = []
    for index in drawn_inputs(model):
        tensor = model.inputs[index]
        rank = len(tensor.shape)
        own = [
            layer.name
            for layer in candidates
            if input_streams(model, layer.name) == {index} and len(layer.output.shape) == rank
        ]
        if not own:
            raise ValueError(
                f"model {model.name!r} has no conv layer that reads its input {tensor.name!r} "
                "alone; name the layers to explain with --layer"
            )
        chosen.append(own[-1])
    return chosen


def _single(items: Sequence):
    """A functional model's inputs or outputs: the item itself when there is one."""
    return items[0] if len(items) == 1 else list(items)


def input_streams(model: keras.Model, layer: str) -> set[int]:
    """The positions of the model inputs that a layer's output depends on."""
    return inputs_read(model, model.get_layer(layer).output)


def inputs_read(model: keras.Model, tensor, beside=None) -> set[int]:
    """The positions of the model inputs that `tensor` depends on, along paths that do not
    pass through the tensor `beside` (if given): the inputs a model from `beside` to
    `tensor` needs besides `beside` itself."""
    inputs = {id(item): index for index, item in enumerate(model.inputs)}
    found: set[int] = set()
    pending = [tensor]
    seen: set[int] = set() if beside is None else {id(beside)}
    while pending:
        tensor = pending.pop()
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        if id(tensor) in inputs:
            found.add(inputs[id(tensor)])
            continue
        operation, node_index, _ = tensor._keras_history
        pending.extend(operation._inbound_nodes[node_index].input_tensors)
    return found


def class_gradients(
    head: keras.Model,
    features: Sequence[np.ndarray],
    class_index: int,
    constants: Sequence[np.ndarray] = (),
):
    """d head(features, constants)[:, class_index] / d features, on the current backend.

    Args:
        head: a model from the explained layers' outputs (then `constants`) to the class
            scores.
        features: the explained layers' outputs, one array each.
        class_index: the class whose score is differentiated.
        constants: the head's other inputs (model inputs it reads besides the features),
            held fixed.

    Returns:
        One gradient array per feature array, as NumPy.

    Raises:
        ValueError: a backend without gradients (numpy, openvino).
    """
    fixed = [ops.convert_to_tensor(constant) for constant in constants]

    def score(tensors):
        return ops.sum(head(_single([*tensors, *fixed]), training=False)[:, class_index])

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        tensors = [tf.convert_to_tensor(feature) for feature in features]
        with tf.GradientTape() as tape:
            tape.watch(tensors)
            value = score(tensors)
        gradients = tape.gradient(value, tensors)
    elif backend == "jax":
        import jax

        gradients = jax.jit(jax.grad(score))([jax.numpy.asarray(feature) for feature in features])
    elif backend == "torch":
        import torch

        tensors = [
            ops.convert_to_tensor(feature).detach().requires_grad_(True) for feature in features
        ]
        gradients = torch.autograd.grad(score(tensors), tensors)
    else:
        raise ValueError(
            f"Grad-CAM needs gradients: backend {backend!r} has none here; use tensorflow "
            "(the default), jax or torch (KERAS_BACKEND=...)"
        )
    return [ops.convert_to_numpy(gradient) for gradient in gradients]


def grad_cam(
    model: keras.Model,
    inputs: Sequence[np.ndarray],
    class_index: int,
    layers: Sequence[str] | None = None,
) -> list[np.ndarray]:
    """Grad-CAM maps of one clip at the given conv layers.

    Each layer is explained on its own: the gradient of the class logit with respect to its
    output, the model's other paths to the logit (another branch, another input) held at this
    clip's values, so any conv layers may be named, one feeding another or one branch of two.

    Args:
        model: the classifier (inputs -> softmax probabilities), or an AU detector (-> sigmoid
            per AU).
        inputs: the normalised input streams, each (1, frames, height, width, channels) or
            (1, height, width, channels).
        class_index: the class (an AU detector's AU, by position) explained.
        layers: layer names; default `default_layers(model)`.

    Returns:
        Per layer, a map (time, height, width) or (height, width) in [0, 1] at that layer's
        resolution.

    Raises:
        ValueError: an unknown layer, or one whose output is not a spatial map.
    """
    layers = list(layers or default_layers(model))
    targets = [model.get_layer(name).output for name in layers]
    for name, target in zip(layers, targets, strict=True):
        if len(target.shape) not in (IMAGE_RANK, CLIP_RANK):
            raise ValueError(
                f"layer {name!r} outputs {tuple(target.shape)}: Grad-CAM needs a spatial map "
                "(batch, [time,] height, width, channels)"
            )
    # The score before the softmax: the layer named "logits" (every family's classifier), else
    # the input of an output activation (an AU detector's sigmoid).
    names = {layer.name for layer in model.layers}
    last = model.outputs[0]._keras_history.operation
    if "logits" in names:
        scores = model.get_layer("logits").output
    elif isinstance(last, keras.layers.Activation | keras.layers.Softmax):
        scores = last.input
    else:
        scores = model.outputs[0]
    streams = [ops.convert_to_tensor(array) for array in inputs]
    body = keras.Model(_single(model.inputs), _single(targets))
    features = body(_single(streams), training=False)
    features = [
        ops.convert_to_numpy(feature) for feature in (features if len(layers) > 1 else [features])
    ]
    maps = []
    for target, feature in zip(targets, features, strict=True):
        beside = sorted(inputs_read(model, scores, beside=target))
        head = keras.Model(_single([target, *(model.inputs[index] for index in beside)]), scores)
        constants = [inputs[index] for index in beside]
        (gradient,) = class_gradients(head, [feature], class_index, constants)
        weights = gradient[0].mean(axis=tuple(range(gradient.ndim - 2)))  # one per channel
        cam = np.maximum((feature[0] * weights).sum(axis=-1), 0.0)  # ([time,] height, width)
        maps.append(cam / cam.max() if cam.max() > 0 else cam)
    return maps


def resize_map(cam: np.ndarray, frames: int, size: int) -> np.ndarray:
    """A (time, height, width) map at (frames, size, size): nearest in time, bilinear in space."""
    steps = np.minimum((np.arange(frames) * cam.shape[0]) // frames, cam.shape[0] - 1)
    return np.stack(
        [
            cv2.resize(cam[step].astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR)
            for step in steps
        ]
    )


def overlay(frames: np.ndarray, cam: np.ndarray) -> np.ndarray:
    """RGB uint8 frames (F, S, S, 3) with the map (F, S, S) in [0, 1] drawn over them (jet)."""
    heat = colormaps["jet"](np.clip(cam, 0.0, 1.0))[..., :3] * 255.0
    return ((1 - HEAT_ALPHA) * frames + HEAT_ALPHA * heat).round().astype(np.uint8)


def _rgb(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames, dtype=np.uint8)
    return np.repeat(frames, 3, axis=-1) if frames.shape[-1] == 1 else frames


def _tiles(frames: np.ndarray, side: int, boxes: np.ndarray | None = None) -> list[np.ndarray]:
    """Frames scaled to side x side for display, with a box (in frame pixels) drawn on each."""
    scale = side / frames.shape[1]
    tiles = []
    for index, frame in enumerate(frames):
        tile = cv2.resize(frame, (side, side), interpolation=cv2.INTER_NEAREST)
        if boxes is not None:
            x0, y0, x1, y1 = (
                (np.asarray(boxes[index], dtype=np.float64) * scale).round().astype(int)
            )
            cv2.rectangle(tile, (x0, y0), (x1 - 1, y1 - 1), (255, 255, 255), 2)
        tiles.append(np.ascontiguousarray(tile))
    return tiles


def _grey(channel: np.ndarray) -> np.ndarray:
    """One channel of an image input as grey RGB uint8, scaled to its own min..max."""
    channel = np.asarray(channel, dtype=np.float32)
    low, span = channel.min(), channel.max() - channel.min()
    scaled = (channel - low) / span * 255.0 if span > 0 else np.zeros_like(channel)
    return np.repeat(scaled.round().astype(np.uint8)[..., None], 3, axis=-1)


def channel_names(bundle: Bundle, stream: int) -> list[str]:
    """The names of an image input's channels: the flow's (`data.flow.channels`) for an input
    made from the flow settings, else "channel 1", "channel 2", ..."""
    name = bundle.data.input_names()[stream]
    if "flow" in input_type(name).settings(bundle.data):
        return list(bundle.data.flow.channels)
    return [f"channel {index + 1}" for index in range(int(bundle.model.inputs[stream].shape[-1]))]


Row = tuple[str, list[np.ndarray], list[str]]  # label, tiles, the tiles' labels (or none)


def _cam_label(layer: str, read: set[int]) -> str:
    """How the strip names a layer's Grad-CAM (`read`: the inputs the layer depends on)."""
    return f"Grad-CAM {layer}" + (" (both inputs)" if len(read) > 1 else "")


def _clip_rows(
    bundle: Bundle,
    row: pd.Series,
    streams: list[list[np.ndarray]],
    drawn: list[int],
    layers: list[str],
    maps: list[np.ndarray],
) -> tuple[list[Row], list[list[np.ndarray]], str | None]:
    """A clip model's strip rows (frames, Grad-CAM; region crops and theirs), its overlays per
    frame (for the GIF) and the AU region of a two-stream model; `drawn`: the clip inputs."""
    names = bundle.data.input_names()
    images = {stream: _rgb(streams[stream][0]) for stream in drawn}  # (frames, size, size, 3)
    count, size = images[drawn[0]].shape[:2]
    region = boxes = None
    if "au_regions" in bundle.data.input_names():
        full = np.stack(selected_frames(bundle.data, row))  # the frames the crops came from
        found = region_crops(bundle.data, full, row["aus"], str(row["path"]))
        region = found.region
        boxes = found.boxes * np.array([size / full.shape[2], size / full.shape[1]] * 2)
    side = int(np.clip(STRIP_WIDTH // count, *TILE_LIMITS))
    numbers = [str(number) for number in range(1, count + 1)]
    rows = [(names[drawn[0]], _tiles(images[drawn[0]], side, boxes), numbers)]
    overlays = []
    for stream, image in images.items():
        if names[stream] == "au_regions":
            rows.append((f"region crops: {region}", _tiles(image, side), []))
        for layer, cam in zip(layers, maps, strict=True):
            read = input_streams(bundle.model, layer)
            if (read == {stream}) or (stream == drawn[0] and len(read) > 1):
                tiles = _tiles(overlay(image, resize_map(cam, count, size)), side)
                rows.append((_cam_label(layer, read), tiles, []))
                overlays.append(tiles)
    return rows, overlays, region


def _image_rows(
    bundle: Bundle,
    streams: list[list[np.ndarray]],
    drawn: list[int],
    layers: list[str],
    maps: list[np.ndarray],
) -> list[Row]:
    """An image model's strip rows: per drawn input, its channels and the Grad-CAM of each
    layer that reads it, over its magnitude channel (or its first)."""
    rows = []
    names = bundle.data.input_names()
    for stream in drawn:
        name, tensor = names[stream], bundle.model.inputs[stream]
        image = np.asarray(streams[stream][0], dtype=np.float32)  # (height, width, channels)
        labels = channel_names(bundle, stream)
        shown = [_grey(image[..., index]) for index in range(image.shape[-1])]
        background = shown[labels.index("magnitude") if "magnitude" in labels else 0]
        for layer, cam in zip(layers, maps, strict=True):
            read = input_streams(bundle.model, layer)
            if stream in read:
                heat = resize_map(cam[None], 1, image.shape[0])
                shown.append(overlay(background[None], heat)[0])
                labels = [*labels, _cam_label(layer, read)]
        rows.append((f"{name} ({tensor.name})", _tiles(np.stack(shown), TILE_LIMITS[1]), labels))
    return rows


@dataclasses.dataclass
class Explanation:
    """What `explain_clip` found and wrote."""

    clip: str
    explained: str  # the class (an AU detector's "AU<n>") whose evidence is shown
    predicted: str  # the class; an AU detector's AUs at p >= 0.5 ("4+12", "" for none)
    probabilities: dict[str, float]  # per output (`Bundle.outputs`)
    layers: list[str]
    region: str | None  # the AU region of a two-stream model
    predicted_aus: str | None  # without `aus`: what the model's own AU detector found ("4+12")
    window: list[int] | None  # [onset, offset] the inputs came from (see predict.clip_manifest)
    apex: int | None  # the flow inputs' apex frame, given or chosen (None: no input reads one)
    spotted: bool  # the window was found by spotting, not given
    not_drawn: list[str]  # inputs fed as they are but not drawn (FMER's fmer_patches)
    strip: Path
    gif: Path | None  # None for a model of image inputs: nothing moves


def explain_clip(
    bundle: Bundle,
    clip: str | Path,
    out_dir: str | Path,
    *,
    onset: int | None = None,
    offset: int | None = None,
    apex: int | None = None,
    aus: str | None = None,
    class_name: str | None = None,
    layers: Sequence[str] | None = None,
) -> Explanation:
    """Writes `<clip>_gradcam.png` (a strip: the inputs and their Grad-CAM, see the module
    docstring) and, for a model of frame inputs, `<clip>_gradcam.gif` (the overlays frame by
    frame) into out_dir.

    Args:
        bundle: the loaded model.
        clip: a video or a frame folder, preprocessed as in training.
        out_dir: where to write.
        onset, offset, apex, aus: as for predict; without aus, a model with its own AU
            detector (see predict) lets it choose the region.
        class_name: the class to explain (an AU detector's output, "AU4"); default the
            predicted class (the AU of the highest probability).
        layers: conv layers to explain; default one per input (see the module docstring).

    Raises:
        DataError: the clip cannot be read; ValueError: an unknown class or layer, or a model
            with both frame and image inputs, or neither (`drawn_inputs`).
    """
    outputs = bundle.outputs
    if class_name is not None and class_name not in outputs:
        kind = "classes" if bundle.aus is None else "outputs"
        raise ValueError(f"--class {class_name!r} is not one of the model's {kind} {outputs}")
    drawn = drawn_inputs(bundle.model)
    manifest = clip_manifest(bundle, [clip], onset=onset, offset=offset, apex=apex, aus=aus)
    detected = aus is None and bundle.detector is not None
    if detected:
        manifest = with_predicted_aus(bundle, manifest)
    streams = preprocess_clips(bundle, manifest)
    probabilities = predict_streams(bundle, streams)[0]
    likeliest = outputs[int(probabilities.argmax())]
    predicted = likeliest if bundle.aus is None else joined_aus(bundle.aus, probabilities)
    explained = class_name or likeliest
    layers = list(layers or default_layers(bundle.model))
    inputs = [
        normalizer(stream[0])[None]
        for stream, normalizer in zip(streams, bundle.normalizers, strict=True)
    ]
    maps = grad_cam(bundle.model, inputs, outputs.index(explained), layers)

    name = Path(clip).stem if Path(clip).is_file() else Path(clip).name
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    scores = ", ".join(
        f"{label} {value:.2f}" for label, value in zip(outputs, probabilities, strict=True)
    )
    title = f"{name}: predicted {predicted or 'no AU'} ({scores}); Grad-CAM of {explained!r}"
    region = gif = None
    if len(bundle.model.inputs[drawn[0]].shape) == CLIP_RANK:
        rows, overlays, region = _clip_rows(bundle, manifest.iloc[0], streams, drawn, layers, maps)
        gif = out_dir / f"{name}_gradcam.gif"
        _write_gif(gif, [np.concatenate(tiles, axis=1) for tiles in zip(*overlays, strict=True)])
    else:
        rows = _image_rows(bundle, streams, drawn, layers, maps)
    names = bundle.data.input_names()
    hidden = [names[index] for index in range(len(names)) if index not in drawn]
    if hidden:
        title += f"; fed, not drawn: {', '.join(hidden)}"
    if region is not None:
        title += f"; AU region {region}"
        if detected:
            title += f", from AUs {manifest['aus'].iloc[0] or 'none'} (its AU detector)"
        title += " (white box)"
    strip = out_dir / f"{name}_gradcam.png"
    _write_strip(strip, rows, title)
    row = manifest.iloc[0]
    return Explanation(
        clip=str(clip),
        explained=explained,
        predicted=predicted,
        probabilities={
            label: float(value) for label, value in zip(outputs, probabilities, strict=True)
        },
        layers=layers,
        region=region,
        predicted_aus=row["aus"] if detected else None,
        window=row["window"],
        apex=None if pd.isna(row["apex"]) else int(row["apex"]),
        spotted=bool(row["spotted"]),
        not_drawn=hidden,
        strip=strip,
        gif=gif,
    )


def _write_strip(path: Path, rows: list[Row], title: str) -> None:
    """One image row per (label, tiles, tile labels), the tile labels above their tiles, a
    title on top."""
    side = rows[0][1][0].shape[0]
    count = max(len(tiles) for _, tiles, _ in rows)
    width = side * count / 100 + 1.4
    figure = Figure(figsize=(width, side * len(rows) / 100 + 0.8), dpi=100, layout="constrained")
    axes = figure.subplots(len(rows), 1, squeeze=False)[:, 0]
    for axis, (label, tiles, tile_labels) in zip(axes, rows, strict=True):
        axis.imshow(np.concatenate(tiles, axis=1), interpolation="nearest")
        axis.set_yticks([])
        axis.set_ylabel(label, fontsize="small")
        axis.set_xticks((np.arange(len(tiles)) + 0.5) * side, labels=tile_labels)
        axis.tick_params(length=0, labelsize="small", labeltop=bool(tile_labels), labelbottom=False)
    figure.suptitle(title, fontsize="small", wrap=True)
    FigureCanvasAgg(figure)
    figure.savefig(path, format="png")


def _write_gif(path: Path, frames: list[np.ndarray]) -> None:
    """An endlessly looping GIF of RGB uint8 frames, each numbered."""
    from PIL import Image

    pictures = []
    for index, frame in enumerate(frames):
        frame = frame.copy()
        cv2.putText(
            frame, str(index + 1), (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1
        )
        pictures.append(Image.fromarray(frame))
    pictures[0].save(path, save_all=True, append_images=pictures[1:], duration=GIF_FRAME_MS, loop=0)


def explain_command(arguments: argparse.Namespace) -> int:
    """`python -m mer explain`: writes the strip and the GIF, prints what it wrote as JSON."""
    bundle = load_bundle(arguments.model)
    reason = model_family(bundle.info.get("family", DEFAULT_FAMILY)).not_applicable.get("explain")
    if reason:
        raise ConfigError(reason)
    explanation = explain_clip(
        bundle,
        arguments.clip,
        arguments.out,
        onset=arguments.onset,
        offset=arguments.offset,
        apex=arguments.apex,
        aus=arguments.aus,
        class_name=arguments.class_name,
        layers=arguments.layer or None,
    )
    result = dataclasses.asdict(explanation)
    result.update(strip=str(explanation.strip), gif=explanation.gif and str(explanation.gif))
    print(json.dumps(result))
    return 0

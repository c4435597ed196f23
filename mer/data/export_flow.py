"""`python -m mer export-flow`: each clip's flow inputs as PNG images, for the RCN and Dual-ATME
code, which read 3-channel flow images named in `<path> <label> <dbtype>` lists (a composite run
writes those lists: `mer.training.loso.write_split_lists`).

Each flow input of each clip becomes `<out>/<input>/<sample>_<input>.png` (`flow_image_path`):
the array preprocessing caches (so a training run and the export compute the flow once), its
channels in `data.flow.channels` order as R, G, B (u, v, magnitude by default), each already
min-max scaled to [-1, 1] per image (`data.flow.scaling: min_max`) and written as the uint8
p = round((x + 1) · 127.5); x = p / 127.5 - 1 reads it back within 1/255, half a step.
Dual-ATME's loader finds the puzzle image by replacing every "flow" of the path with
"flow_puzzle": with these names that works when neither the folder nor the sample id holds "flow".
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from pathlib import Path, PurePosixPath

import cv2
import numpy as np

from mer.config import ConfigError, DataConfig, load_config, resolve_path
from mer.data.sheets import DataError
from mer.data.sources import load_manifest, preprocess, resolve_source, usable_samples
from mer.io import write_atomically

FLOW_INPUTS = ("flow", "flow_puzzle")  # the input types whose arrays are flow images
IMAGE_CHANNELS = 3  # what the RCN and Dual-ATME loaders read (PIL's convert("RGB"))
# What a sample id may keep in a file name. The cache names its files by the same rule today;
# this one is kept apart because the split lists point at these names (a format others read).
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def flow_image_path(sample: str, input_name: str) -> PurePosixPath:
    """Where export-flow writes a sample's flow input, relative to its output folder:
    `<input>/<sample>_<input>.png`, characters other than letters, digits, `.`, `_` and `-`
    (the `/` of composite ids) replaced by `_`."""
    name = _UNSAFE.sub("_", sample).strip("_")
    return PurePosixPath(input_name) / f"{name}_{input_name}.png"


def flow_png(image: np.ndarray) -> np.ndarray:
    """A flow image scaled to [-1, 1] as uint8 0..255: round((x + 1) · 127.5)."""
    scaled = (np.asarray(image, dtype=np.float32) + 1) * 127.5
    return np.rint(scaled).clip(0, 255).astype(np.uint8)


def export_flow(data: DataConfig, out: Path) -> list[Path]:
    """Writes every clip's flow inputs under `out` as PNG images (see the module docstring).

    Args:
        data: the experiment's data config; its inputs other than the flow ones are ignored.
        out: the output folder (made if absent).

    Returns:
        The files written, input by input, clip by clip.

    Raises:
        ConfigError: no flow input in data.inputs, data.flow.scaling other than min_max, or
            not 3 channels.
        DataError: as preprocessing raises it, or two sample ids that give one file name.
    """
    names = [name for name in data.input_names() if name in FLOW_INPUTS]
    if not names:
        raise ConfigError(
            f"data.inputs is {data.input_names()}: no flow input ({', '.join(FLOW_INPUTS)}) to "
            "write; e.g. --set data.inputs=[flow]"
        )
    if data.flow.scaling != "min_max":
        raise ConfigError(
            f"data.flow.scaling={data.flow.scaling!r}: the images hold flow scaled to [-1, 1]; "
            "set it to min_max"
        )
    if len(data.flow.channels) != IMAGE_CHANNELS:
        raise ConfigError(
            f"data.flow.channels={data.flow.channels}: the images have {IMAGE_CHANNELS} "
            "channels, e.g. [u, v, magnitude]"
        )
    source = resolve_source(data)
    data = dataclasses.replace(source.resolved(data), inputs=names)
    manifest = usable_samples(data, load_manifest(data, source))
    prepared = preprocess(data, manifest)
    samples = manifest["sample"].iloc[prepared.rows].astype(str).tolist()
    first_sample: dict[PurePosixPath, str] = {}
    for sample in samples:
        path = flow_image_path(sample, names[0])
        if first_sample.setdefault(path, sample) != sample:
            raise DataError(
                f"samples {first_sample[path]!r} and {sample!r} would share the file {path}"
            )
    written = []
    for name, stream in zip(names, prepared.streams, strict=True):
        for sample, image in zip(samples, stream, strict=True):
            target = out / flow_image_path(sample, name)
            encoded, png = cv2.imencode(".png", cv2.cvtColor(flow_png(image), cv2.COLOR_RGB2BGR))
            if not encoded:
                raise DataError(f"cannot encode the {name} image of {sample} as PNG")
            write_atomically(target, png.tobytes())
            written.append(target)
    return written


def export_flow_command(arguments: argparse.Namespace) -> int:
    """`python -m mer export-flow --config FILE [--set ...] --out DIR`."""
    config = load_config(resolve_path(arguments.config), arguments.overrides)
    out = resolve_path(arguments.out)
    written = export_flow(config.data, out)
    print(f"Flow images: {len(written)} in {out}")
    return 0

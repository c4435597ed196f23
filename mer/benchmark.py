"""`python -m mer bench`: how fast this machine trains, predicts and preprocesses, as one JSON.

Everything runs on synthetic data of the configured shape, so no dataset is needed:
1. compute: training steps on batches already in memory, fed as a run feeds its batches
   (`mer.data.batches.feed`; clips/s);
2. pipeline: the same steps fed by `ClipBatches` from a preprocessing cache of random inputs of
   each input's shape and dtype (uint8 frames, float16 flow), as a real run is, and the ratio of
   (2) to (1) (1.0: the input costs nothing); and that epoch's batches built alone, with no
   training, by one thread (`input_clips_per_s`) and by `data.workers` threads at once
   (`input_workers_clips_per_s`: what a run's feed threads can build for a faster device);
3. inference clips/s;
4. the model's analytic forward GFLOPs per clip, the achieved training GFLOP/s and this
   machine's peak, a large float32 matmul timed in the same run. A training step costs the
   forward pass plus the weight and input gradients (`mer.models.flops.training_flops`): about
   2.2x forward here, not the rule-of-thumb 3x, because the first convolutions, which carry most
   of the cost, need no input gradient;
5. peak resident memory of the process;
6. what the figures depend on: the CPU's widest vector ISA, the oneDNN ISA in use
   (`ONEDNN_MAX_CPU_ISA` limits it), whether TensorFlow runs its oneDNN kernels (on by default
   only on CPUs with AVX512_VNNI, AVX512_BF16, AVX-VNNI or AMX; `TF_ENABLE_ONEDNN_OPTS` decides
   otherwise) and TensorFlow op determinism, which the benchmark switches on as runs do;
7. preprocessing clips/s of the configured inputs (`data.inputs`: decoding, face detection,
   landmarks and the AU-region crop, or the aligned face and two TV-L1 flows, ...) on demo
   videos.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import os
import platform
import resource
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import keras
import numpy as np

from mer.config import ExperimentConfig, SheetColumns
from mer.data.batches import ClipBatches, feed, fit_normalizers
from mer.data.cache import ClipCache
from mer.models.flops import forward_flops, training_flops
from mer.models.layers import Conv3D as StackedFrameConv3D
from mer.models.layers import tensorflow_onednn
from mer.specs import InputSpec

KEYS = (
    "train_compute_clips_per_s",
    "train_pipeline_clips_per_s",
    "pipeline_ratio",
    "input_clips_per_s",
    "input_workers_clips_per_s",
    "infer_clips_per_s",
    "gflops_per_clip",
    "achieved_gflops",
    "peak_gflops",
    "peak_rss_mb",
    "preprocess_clips_per_s",
    "backend",
    "device",
    "dtype",
    "cpu_isa",
    "onednn_isa",
    "tensorflow_onednn",
    "deterministic",
)
CPU_ISAS = ("avx512f", "avx2", "avx", "sse4_2")  # widest first, as /proc/cpuinfo names them


@dataclasses.dataclass(frozen=True)
class BenchPlan:
    """How much work each measurement does."""

    steps: int  # timed training steps on in-memory batches
    clips: int  # clips in the synthetic cache for the pipeline epoch
    preprocess_clips: int  # demo videos preprocessed
    matmul_size: int  # n of the n x n float32 matmul for the peak

    @classmethod
    def make(cls, quick: bool, clips: int | None, batch_size: int) -> BenchPlan:
        steps = 3 if quick else 12
        clips = clips if clips is not None else (2 if quick else 8) * batch_size
        if clips < 1:
            raise ValueError(f"--clips must be positive, got {clips}")
        clips = math.ceil(clips / batch_size) * batch_size  # whole batches: no retracing
        return cls(steps, clips, 3 if quick else 12, 2048 if quick else 4096)


class RepeatedBatch(keras.utils.PyDataset):
    """The same in-memory batch, `steps` times: training with no input cost at all. It is fed
    as a run feeds its batches (`mer.data.batches.feed`), not through tf.data's autotuned
    prefetch: its iterator stalled at the end of `fit` in about a third of the epochs (4 of 12
    on a 2-core Xeon, 0.6-0.8 s after the last of 6 steps), which halved some compute
    figures."""

    def __init__(self, inputs, targets, steps: int):
        super().__init__()
        self.inputs, self.targets, self.steps = inputs, targets, steps

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, index: int):
        return (self.inputs,) if self.targets is None else (self.inputs, self.targets)


def run_benchmark(
    config: ExperimentConfig,
    *,
    quick: bool = False,
    clips: int | None = None,
    profile: bool = False,
):
    """Runs every measurement for `config`'s model and input shape; returns the KEYS dict, and
    with `profile` the op table of the compute steps under TensorFlow's profiler."""
    from mer.data.inputs import input_specs
    from mer.models import model_family
    from mer.training.loso import TargetBatches, build_model, make_deterministic, step_batch_size

    make_deterministic()  # as runs do: the kernels a run computes with
    specs = input_specs(config.data)
    shapes = [spec.shape for spec in specs]
    batch_size = step_batch_size(config)  # clips per training step
    plan = BenchPlan.make(quick, clips, batch_size)
    classes = len(config.data.classes)
    keras.utils.set_random_seed(config.seed)
    model = build_model(config, specs)
    random = np.random.default_rng(config.seed)

    batch = [random.standard_normal((batch_size, *shape), dtype=np.float32) for shape in shapes]
    batch_inputs = batch[0] if len(batch) == 1 else tuple(batch)
    labels = np.eye(classes, dtype=np.float32)[np.arange(batch_size) % classes]
    second = second_output_targets(config, batch_size)
    targets = labels if second is None else (labels, second)
    detector = model_family(config.model.family).predicts == "aus"
    if detector:  # its one output trains on the AU targets alone, as in a run
        targets = second

    workers = config.data.workers

    def repeated(steps: int, labelled: bool = True):
        return feed(RepeatedBatch(batch_inputs, targets if labelled else None, steps), workers)

    model.fit(repeated(2), epochs=1, verbose=0, shuffle=False)  # trace, warm up
    compute_seconds = _timed(
        lambda: model.fit(repeated(plan.steps), epochs=1, verbose=0, shuffle=False)
    )
    compute = plan.steps * batch_size / compute_seconds
    if profile:
        from mer.step_profile import profile_training

        profiled = profile_training(model, repeated(plan.steps), plan.steps)

    with tempfile.TemporaryDirectory(prefix="mer-bench-") as scratch:
        cached = _cached_clips(Path(scratch), plan.clips, specs, config.seed)
        normalizers = fit_normalizers(config.data, cached)
        batches = ClipBatches(
            cached,
            np.arange(plan.clips) % classes,
            classes,
            batch_size,
            normalizers,
            shuffle=True,
            seed=config.seed,
            targets=second_output_targets(config, plan.clips),
        )
        fed = feed(TargetBatches(batches) if detector else batches, workers, shuffle=True)
        pipeline = plan.clips / _timed(
            lambda: model.fit(fed, epochs=1, verbose=0, shuffle=False)
        )
        # one thread, then data.workers threads as the feed runs them; in turn,
        # a round to warm up (its fresh memory faults in), then 5 (an epoch of the bench's
        # clips takes well under a second), medians
        with ThreadPoolExecutor(config.data.workers) as pool:
            rounds = np.array(
                [
                    (
                        _timed(lambda: build_epoch(batches, map)),
                        _timed(lambda: build_epoch(batches, pool.map)),
                    )
                    for _ in range(6)
                ]
            )
        one_thread, threads = plan.clips / np.median(rounds[1:], axis=0)

    prediction = repeated(plan.steps, labelled=False)
    model.predict(repeated(1, labelled=False), verbose=0)  # trace
    infer = plan.steps * batch_size / _timed(lambda: model.predict(prediction, verbose=0))

    gflops = forward_flops(model) / 1e9
    train_gflops = training_flops(model) / 1e9
    peak = peak_gflops(plan.matmul_size)
    preprocess_rate = preprocess_clips_per_s(config, plan.preprocess_clips)
    return {
        "train_compute_clips_per_s": round(compute, 2),
        "train_pipeline_clips_per_s": round(pipeline, 2),
        "pipeline_ratio": round(pipeline / compute, 3),
        "input_clips_per_s": round(one_thread, 2),
        "input_workers_clips_per_s": round(threads, 2),
        "infer_clips_per_s": round(infer, 2),
        "gflops_per_clip": round(gflops, 3),
        "achieved_gflops": round(train_gflops * compute, 1),
        "peak_gflops": round(peak, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "preprocess_clips_per_s": round(preprocess_rate, 2),
        "backend": keras.backend.backend(),
        "device": device_name(),
        "dtype": model.dtype_policy.name,
        "cpu_isa": cpu_isa(),
        "onednn_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", "default (all the CPU has)"),
        "tensorflow_onednn": tensorflow_onednn(),
        "deterministic": op_determinism(),
        # the form of the first-stage convs timed (model.convolution, `auto` resolved)
        "convolution": (
            "stacked"
            if any(isinstance(layer, StackedFrameConv3D) for layer in model.layers)
            else "plain"
        ),
        "train_gflops_per_clip": round(train_gflops, 3),
        "input_shape": list(shapes[0]),
        "inputs": [[spec.name, list(spec.shape)] for spec in specs],
        "streams": len(specs),
        "batch_size": config.train.batch_size,
        "micro_batches": config.train.micro_batches,
        "workers": config.data.workers,
        "parameters": model.count_params(),
        "quick": quick,
        **(profiled if profile else {}),
    }


def second_output_targets(config: ExperimentConfig, count: int) -> np.ndarray | None:
    """Targets of `count` clips for the second output of a family that has one (FMER's AU
    logits: no AU active, every clip annotated; an AU detector's only output), as a run makes
    them; None for the others."""
    from mer.models import model_family

    make = model_family(config.model.family).targets
    return None if make is None else make([frozenset()] * count, config)


def build_epoch(batches: keras.utils.PyDataset, map_function) -> None:
    """Builds every batch of an epoch with `map_function` (`map`, or a thread pool's), each
    dropped once built, as training drops it: keeping them would add the whole epoch in
    float32 (5 GB for 442 two-stream clips of 30x128x128x3) to the peak memory reported."""
    collections.deque(map_function(batches.__getitem__, range(len(batches))), maxlen=0)


def _timed(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def _random_input(random: np.random.Generator, spec: InputSpec) -> np.ndarray:
    """One random sample of an input: uint8 pixels, or standard normal values (flow)."""
    if spec.dtype == "uint8":
        return random.integers(0, 256, spec.shape, dtype=np.uint8)
    return random.standard_normal(spec.shape).astype(spec.dtype)


def _cached_clips(
    directory: Path, count: int, specs: Sequence[InputSpec], seed: int
) -> list[list[np.ndarray]]:
    """`count` random samples per input, in its shape and dtype, written to and memory-mapped
    from a ClipCache, one entry per sample and input as preprocessing stores them."""
    random = np.random.default_rng(seed)
    streams: list[list[np.ndarray]] = []
    for position, spec in enumerate(specs):
        cache = ClipCache(directory / "cache", {"bench": list(spec.shape), "input": position})
        streams.append(
            [
                cache.load_or_make(
                    f"clip{index:04d}",
                    {"clip": index},
                    lambda spec=spec: _random_input(random, spec),
                    spec.dtype,
                )[0]
                for index in range(count)
            ]
        )
    return streams


def peak_gflops(size: int, repeats: int = 3) -> float:
    """The best float32 GFLOP/s of an n x n matmul on the backend's default device."""
    random = np.random.default_rng(0)
    left = keras.ops.convert_to_tensor(random.standard_normal((size, size), dtype=np.float32))
    right = keras.ops.convert_to_tensor(random.standard_normal((size, size), dtype=np.float32))
    keras.ops.convert_to_numpy(keras.ops.matmul(left, right))  # warm up the kernels
    rounds = 4
    best = math.inf
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(rounds):
            product = keras.ops.matmul(left, right)
        keras.ops.convert_to_numpy(product[:1, :1])  # waits for queued work on a GPU
        best = min(best, time.perf_counter() - started)
    return rounds * 2 * size**3 / best / 1e9


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if platform.system() == "Darwin" else peak / 1024


def device_name() -> str:
    """The device the backend computes on, in words."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        if device.platform != "cpu":
            return f"{device.platform}: {device.device_kind}"
    if backend == "torch":
        import torch

        if torch.cuda.is_available():
            return f"cuda: {torch.cuda.get_device_name(0)}"
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            return f"gpu: {tf.config.experimental.get_device_details(gpus[0]).get('device_name')}"
    return f"cpu: {_cpu_model()} ({_cpu_count()} cores)"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_isa(cpuinfo: str | None = None) -> str:
    """The widest vector ISA among the CPU's flags in /proc/cpuinfo (or `cpuinfo`, its text),
    e.g. "avx512f" or "avx2"; "unknown" where there is no such file."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return "unknown"
    flags = {
        flag
        for line in cpuinfo.splitlines()
        if line.startswith("flags")
        for flag in line.split(":", 1)[1].split()
    }
    return next((isa for isa in CPU_ISAS if isa in flags), "unknown")


def op_determinism() -> bool | None:
    """Whether TensorFlow's op determinism is on; None on the other backends."""
    if keras.backend.backend() != "tensorflow":
        return None
    from tensorflow.python.framework import config  # enable_op_determinism's public twin is absent

    return config.is_op_determinism_enabled()


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def preprocess_clips_per_s(config: ExperimentConfig, count: int) -> float:
    """Clips/s of `preprocess` of the configured inputs on demo videos, from an empty cache."""
    from mer.data.faces import shared_landmarker
    from mer.data.manifest import build_manifest
    from mer.data.sources import preprocess, resolve_sampler
    from mer.data.synthetic import CLASS_NAMES, DemoSpec, generate_demo

    data = config.data
    spec = DemoSpec(
        subjects=2,
        clips_per_class=math.ceil(count / (2 * len(CLASS_NAMES))),
        frames=max(DemoSpec.frames, data.frames + data.frame_offset + 2),
        size=256,
    )
    with tempfile.TemporaryDirectory(prefix="mer-bench-") as scratch:
        root = Path(scratch) / "demo"
        sheet = generate_demo(root, spec)
        settings = dataclasses.replace(
            data,
            classes=list(CLASS_NAMES),
            columns=SheetColumns(),
            cache_dir=str(Path(scratch) / "cache"),
            sampler=resolve_sampler(data, None),  # the demo's layout: class folders
        )
        manifest = build_manifest(settings, root, sheet, "bench").samples.iloc[:count]
        shared_landmarker()  # loaded once per run, not per clip: not part of the rate
        started = time.perf_counter()
        preprocess(settings, manifest)
        return len(manifest) / (time.perf_counter() - started)

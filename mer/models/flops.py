"""Analytic forward cost of a model: the multiply-adds of its convolutions, dense projections,
recurrent cells and attention products, counted as 2 FLOPs each.

Pooling, activations, normalisation and element-wise products are left out: in these networks
they are a few percent of the convolutions, and they run far below the matmul peak anyway.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import keras


def _positions(shape: Sequence[int | None]) -> int:
    """Product of the dimensions between batch and features: where a kernel is applied."""
    return math.prod(int(size) for size in shape[1:-1])


def _shape(tensor) -> tuple:
    return tuple(tensor.shape)


def layer_flops(layer: keras.layers.Layer, input_shape: Sequence, output_shape: Sequence) -> int:
    """Forward FLOPs of one call of `layer` on one sample (batch dimension ignored)."""
    if hasattr(layer, "forward_flops"):  # the custom layers know their own structure
        return int(layer.forward_flops(input_shape))
    if isinstance(layer, keras.layers.Conv1D | keras.layers.Conv2D | keras.layers.Conv3D):
        return 2 * math.prod(layer.kernel.shape) * _positions(output_shape)
    if isinstance(layer, keras.layers.Dense):
        return 2 * math.prod(layer.kernel.shape) * _positions(input_shape)
    if isinstance(layer, keras.layers.GRU | keras.layers.LSTM):
        steps = int(input_shape[1])
        cell = layer.cell
        return 2 * steps * (math.prod(cell.kernel.shape) + math.prod(cell.recurrent_kernel.shape))
    if isinstance(layer, keras.layers.MultiHeadAttention):
        return multi_head_attention_flops(layer, input_shape)
    return 0


def multi_head_attention_flops(layer: keras.layers.MultiHeadAttention, query_shape) -> int:
    """Keras MultiHeadAttention in self-attention: four projections and two batched products."""
    steps = int(query_shape[1])
    projections = [
        layer.query_dense.kernel,
        layer.key_dense.kernel,
        layer.value_dense.kernel,
        layer.output_dense.kernel,
    ]
    heads, key_width = layer.num_heads, layer.key_dim
    value_width = layer.value_dim or key_width
    products = 2 * heads * steps * steps * (key_width + value_width)
    return 2 * steps * sum(math.prod(kernel.shape) for kernel in projections) + products


def _layer_costs(model: keras.Model):
    """(forward FLOPs, reads only model inputs) of every layer call in the functional graph."""
    model_inputs = {id(tensor) for tensor in model.inputs}
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        for node in layer._inbound_nodes:  # one per call of the layer in this graph
            inputs = node.input_tensors
            outputs = node.output_tensors
            if not inputs or not outputs:
                continue
            first = all(id(tensor) in model_inputs for tensor in inputs)
            yield layer_flops(layer, _shape(inputs[0]), _shape(outputs[0])), first


def forward_flops(model: keras.Model) -> int:
    """Forward FLOPs of `model` for one sample, from its functional graph."""
    return sum(flops for flops, _ in _layer_costs(model))


def training_flops(model: keras.Model) -> int:
    """FLOPs of one training step per sample: the forward pass, the weight gradients (as much
    again) and the input gradients (as much again), except for layers that read the model's
    inputs, which need no input gradient. For these networks, whose first convolutions carry
    most of the cost, that is about 2.2x forward rather than the usual rule of 3x."""
    return sum(flops * (2 if first else 3) for flops, first in _layer_costs(model))

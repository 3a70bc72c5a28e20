"""The custom op through which compiled graphs call a deployed layer's int8 kernel."""

from __future__ import annotations

import itertools
import weakref

import torch

# Under torch.compile, a layer's int8 kernels run as one opaque custom op: oneDNN's packed weights
# are not tensors the compiler can trace (and its own int8 lowerings want them as graph
# constants), so the op takes the layer's handle and finds the layer here; the compiler fuses the
# input's quantization into the code before it.
_HANDLES = itertools.count()
_LAYERS: weakref.WeakValueDictionary[int, torch.nn.Module] = weakref.WeakValueDictionary()


@torch.library.custom_op("mixdq::int8_layer", mutates_args=())
def int8_layer(qx: torch.Tensor, handle: int) -> torch.Tensor:
    """Deployed layer `handle`'s int8 kernel on uint8 input codes, fp32 out."""
    return _LAYERS[handle]._int8_forward(qx)


@int8_layer.register_fake
def _(qx: torch.Tensor, handle: int) -> torch.Tensor:
    return qx.new_empty(_LAYERS[handle].output_shape(qx.shape), dtype=torch.float32)


def register(layer: torch.nn.Module) -> int:
    """A new handle for `layer` (it must have `_int8_forward` and `output_shape`)."""
    handle = next(_HANDLES)
    _LAYERS[handle] = layer
    return handle

"""Named choices are `str` enums that read and write as the strings saved files hold."""

import json

import pytest

from mixdq.core.bits import KINDS, Kind
from mixdq.core.metrics import METRICS, Metric
from mixdq.deploy import KERNELS, Kernel, LayerSpec
from mixdq.models.inventory import GROUPS, Group


@pytest.mark.parametrize("names, strings", [
    (KINDS, ("weight", "activation")), (GROUPS, ("content", "quality")), (METRICS, ("ssim", "sqnr")),
    (KERNELS, ("int8", "int8-unpack", "int8-repack", "dequant", "int-mm")),
], ids=["kind", "group", "metric", "kernel"])
def test_named_choices_are_their_strings(names, strings):
    assert names == strings and [f"{n}" for n in names] == list(strings)
    assert json.dumps({"choices": list(names)}) == json.dumps({"choices": list(strings)})
    assert {n: 1 for n in names} == dict.fromkeys(strings, 1)  # a dict read from JSON finds them


def test_strings_read_back_as_the_named_choice():
    assert Kind("weight") is Kind.WEIGHT and Group("content") is Group.CONTENT and Metric("sqnr") is Metric.SQNR
    spec = LayerSpec.from_dict({"layer": "proj", "kind": "Linear", "weight_bits": 4, "act_bits": None,
                                "weight_shape": [8, 8], "bos": False, "kernel": "int8-unpack",
                                "kernel_ms": {"int8-unpack": 0.1, "dequant": 0.2}})
    assert spec.kernel is Kernel.INT8_UNPACK and json.loads(json.dumps(spec.to_dict()))["kernel"] == "int8-unpack"
    assert all(type(k) is str for k in spec.kernel_ms)  # plain keys: Gradio's JSON refuses str subclasses
    with pytest.raises(ValueError, match="unknown kernel 'int4'; expected one of int8, int8-unpack"):
        LayerSpec.from_dict({"layer": "proj", "kind": "Linear", "weight_bits": 4, "act_bits": None,
                             "weight_shape": [8, 8], "bos": False, "kernel": "int4"})

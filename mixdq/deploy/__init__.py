"""Deployment: a quantized allocation as a really low-bit model (packed weights, int8 kernels),
saved and loaded without pickle, and measured rather than computed.

    mixdq.quantize_(pipe, allocation, calibration=...)      # simulated
    deploy(pipe)                                             # real: packed / int8, in place
    save_deployed(pipe, "out/w8a8", base_model=None)         # safetensors + manifest.json
    pipe = load_deployed_pipeline("out/w8a8")                # offline, no pickle (a compiled
                                                             # deployment's unet.pt2 is machine code:
                                                             # load only folders you trust)
    export_openvino(pipe, "out/ov")                          # a quantized pipeline, for OpenVINO
    pipe = load_openvino_pipeline("out/ov")                  # its UNet compiled by OpenVINO
"""

from mixdq.deploy.checkpoint import load_deployed, load_deployed_pipeline, save_deployed
from mixdq.deploy.convert import bos_embedding, deploy, deployed_layers
from mixdq.deploy.kernels import choose_kernels
from mixdq.deploy.layers import DeployedConv2d, DeployedLayer, DeployedLinear, int8_kernels_available, kernel_counts
from mixdq.deploy.manifest import KERNELS, Kernel, LayerSpec, read_manifest
from mixdq.deploy.measure import (
    DeployReport,
    kernel_table,
    latency,
    module_bytes,
    peak_rss_during,
    report,
    resident_bytes,
    weight_bytes,
)
from mixdq.deploy.openvino import OpenVINOUNet, export_openvino, load_openvino_pipeline, read_openvino_manifest
from mixdq.deploy.packing import pack, packed_nbytes, unpack

__all__ = [
    "KERNELS", "DeployReport", "DeployedConv2d", "DeployedLayer", "DeployedLinear", "Kernel", "LayerSpec",
    "OpenVINOUNet",
    "bos_embedding", "choose_kernels", "deploy", "deployed_layers", "export_openvino", "int8_kernels_available",
    "kernel_counts", "kernel_table", "latency", "load_deployed", "load_deployed_pipeline", "load_openvino_pipeline",
    "module_bytes", "pack", "packed_nbytes", "peak_rss_during", "read_manifest", "read_openvino_manifest", "report",
    "resident_bytes", "save_deployed", "unpack", "weight_bytes",
]  # fmt: skip

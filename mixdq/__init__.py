"""MixDQ: mixed-precision quantization of few-step text-to-image diffusion models.

    import mixdq
    pipe = mixdq.load_pipeline("stabilityai/sd-turbo")          # or a folder, or None: embedded
    inv = mixdq.build_inventory(pipe.unet)
    alloc = mixdq.Allocation.uniform(inv.names, weight=8, act=8)
    mixdq.quantize_(pipe, alloc, calibration=mixdq.CalibrationConfig(prompts=["a cat"]))
    image = pipe("a cat", num_inference_steps=1, guidance_scale=0.0).images[0]
    mixdq.restore(pipe)                                         # exact float model again

    profile = mixdq.Profile.load("assets/profiles/sdxl-turbo-mixdq.json")  # or mixdq.sweep(...)
    plan = mixdq.Planner(profile).plan(avg_bits=5)              # live; exact=True for PuLP/CBC
    plan.allocation, plan.weight_mb, plan.damage
"""

from .allocation import Allocation
from .calibration import calibrate, calibrating
from .config import (
    ACT_BITS,
    WEIGHT_BITS,
    ActQuantConfig,
    CalibrationConfig,
    QuantConfig,
    WeightQuantConfig,
)
from .errors import (
    ConfigError,
    MixDQError,
    ModelNotFoundError,
    NotCalibratedError,
    UnknownLayerError,
    UnsupportedBitsError,
    UnsupportedModelError,
)
from .inventory import MIXDQ_RULE, GroupRule, Inventory, LayerInfo, build_inventory
from .layers import quant_layers, unet_of
from .memory import MemoryReport, memory_report
from .metrics import sqnr_db
from .generation import generate_images
from .importers import import_mixdq
from .planner import Plan, PlanConfig, Planner, plan
from .profile import LayerProfile, Profile
from .sensitivity import SweepConfig, sweep
from .solver import Frontier, InfeasibleBudgetError, Knapsack, solve_exact
from .models import ARCHITECTURES, load_inventory, load_pipeline, load_unet_config, text_tokens
from .quantize import (
    apply_allocation,
    current_allocation,
    is_calibrated,
    prepare,
    quantize_,
    restore,
    set_bos_aware,
    set_layer_bits,
)

__all__ = [
    "ACT_BITS", "ARCHITECTURES", "MIXDQ_RULE", "WEIGHT_BITS",
    "ActQuantConfig", "Allocation", "CalibrationConfig", "ConfigError", "GroupRule", "Inventory",
    "LayerInfo", "MemoryReport", "MixDQError", "ModelNotFoundError", "NotCalibratedError",
    "QuantConfig", "UnknownLayerError", "UnsupportedBitsError", "UnsupportedModelError",
    "WeightQuantConfig", "Frontier", "InfeasibleBudgetError", "Knapsack", "LayerProfile", "Plan",
    "PlanConfig", "Planner", "Profile", "SweepConfig",
    "apply_allocation", "build_inventory", "calibrate", "calibrating", "current_allocation",
    "generate_images", "import_mixdq", "is_calibrated", "plan", "solve_exact", "sweep", "load_inventory", "load_pipeline", "load_unet_config",
    "memory_report", "prepare", "quant_layers", "quantize_", "restore", "set_bos_aware",
    "set_layer_bits", "sqnr_db", "text_tokens", "unet_of",
]  # fmt: skip

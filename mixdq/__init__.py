"""MixDQ: mixed-precision quantization of few-step text-to-image diffusion models.

    import mixdq
    pipe = mixdq.load_pipeline("stabilityai/sd-turbo")          # or a folder, or None: embedded
    inv = mixdq.load_inventory("stabilityai/sd-turbo")
    alloc = mixdq.Allocation.uniform(inv.names, weight=8, act=8)
    defaults = mixdq.generation_defaults("stabilityai/sd-turbo")
    mixdq.quantize_(pipe, alloc, calibration=defaults.calibration())   # in place
    image = pipe("a cat", **defaults.as_kwargs()).images[0]
    mixdq.restore(pipe)                                         # exact float model again

    profile = mixdq.Profile.load("assets/profiles/sdxl-turbo-mixdq.json")  # or mixdq.sweep(...)
    plan = mixdq.Planner(profile).plan(avg_bits=5)              # live; exact=True for PuLP/CBC
    plan.allocation, plan.weight_mb, plan.damage

Deployment (packed weights, int8 kernels, save/load) is `mixdq.deploy`.
"""

from . import deploy, logs
from .allocation import Allocation
from .bits import ACT_BITS, WEIGHT_BITS, Bits
from .calibration import calibrate, calibrating, calibration_ranges, set_calibration_ranges
from .config import ActQuantConfig, CalibrationConfig, PlanConfig, QuantConfig, WeightQuantConfig
from .device import Placement, available_bytes, memory_in_use
from .errors import (
    ConfigError,
    DeployedModelError,
    InfeasibleBudgetError,
    InsufficientMemoryError,
    MixDQError,
    ModelNotFoundError,
    NotCalibratedError,
    UnknownLayerError,
    UnsupportedBitsError,
    UnsupportedModelError,
)
from .generation import generate_images
from .importers import import_mixdq
from .inventory import GroupRule, Inventory, LayerInfo, build_inventory
from .memory import MemoryReport, memory_report
from .mixdq_mode import plan_mixdq
from .models import (
    ARCHITECTURES,
    GenerationDefaults,
    fork_pipeline,
    generation_defaults,
    load_inventory,
    load_pipeline,
    load_unet_config,
)
from .planner import Plan, Planner
from .profile import LayerProfile, Profile
from .prompts import PromptCheck, PromptWarning, check_prompt, known_words
from .quantize import (
    apply_allocation,
    clear_weight_cache,
    current_allocation,
    is_calibrated,
    prepare,
    quant_config,
    quantize_,
    restore,
    set_bos_aware,
    set_layer_bits,
)
from .sensitivity import SweepConfig, sweep
from .weight_cache import set_weight_cache_budget, weight_cache_budget

logs.silence_import_noise()

__all__ = [
    # models: where pipelines, layers and sampling settings come from
    "ARCHITECTURES", "GenerationDefaults", "GroupRule", "Inventory", "LayerInfo", "build_inventory",
    "fork_pipeline", "Placement", "available_bytes", "memory_in_use",
    "generation_defaults", "load_inventory", "load_pipeline", "load_unet_config",
    "PromptCheck", "PromptWarning", "check_prompt", "known_words",
    # configs and allocations: data
    "ACT_BITS", "WEIGHT_BITS", "ActQuantConfig", "Allocation", "Bits", "CalibrationConfig",
    "PlanConfig", "QuantConfig", "SweepConfig", "WeightQuantConfig",
    # the verbs (they change the pipeline's UNet in place)
    "apply_allocation", "calibrate", "calibrating", "current_allocation", "is_calibrated", "prepare", "quant_config",
    "quantize_", "restore", "set_bos_aware", "set_layer_bits", "generate_images",
    "calibration_ranges", "set_calibration_ranges", "clear_weight_cache", "set_weight_cache_budget",
    "weight_cache_budget",
    # sensitivity, profiles, allocation
    "LayerProfile", "Plan", "Planner", "Profile", "import_mixdq", "plan_mixdq", "sweep",
    # memory and deployment
    "MemoryReport", "memory_report", "deploy",
    # errors
    "ConfigError", "DeployedModelError", "InfeasibleBudgetError", "InsufficientMemoryError", "MixDQError",
    "ModelNotFoundError", "NotCalibratedError", "UnknownLayerError", "UnsupportedBitsError", "UnsupportedModelError",
]  # fmt: skip

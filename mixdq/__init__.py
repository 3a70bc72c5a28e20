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

Deployment (packed weights, int8 kernels, save/load) is `mixdq.deploy`. The packages, each
importing only from those before it (docs/architecture.md): `core`, `embedded`, `models`,
`quant`, `sensitivity`, `planning` | `deploy`, and `cli` on top.
"""

from mixdq import deploy
from mixdq.core import logs
from mixdq.core.bits import ACT_BITS, WEIGHT_BITS, Bits
from mixdq.core.device import Placement, available_bytes, memory_in_use
from mixdq.core.errors import (
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
from mixdq.models.architectures import ARCHITECTURES, GenerationDefaults, generation_defaults
from mixdq.models.generation import CalibrationConfig, generate_images
from mixdq.models.inventory import GroupRule, Inventory, LayerInfo, build_inventory
from mixdq.models.loading import fork_pipeline, load_inventory, load_pipeline, load_unet_config
from mixdq.models.prompts import PromptCheck, PromptWarning, check_prompt, known_words
from mixdq.planning.config import PlanConfig
from mixdq.planning.planner import Plan, Planner
from mixdq.planning.recipe import plan_mixdq
from mixdq.quant.allocation import Allocation
from mixdq.quant.calibration import calibrate, calibrating, calibration_ranges, set_calibration_ranges
from mixdq.quant.config import ActQuantConfig, QuantConfig, WeightQuantConfig
from mixdq.quant.memory import MemoryReport, memory_report
from mixdq.quant.quantize import (
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
from mixdq.quant.weight_cache import set_weight_cache_budget, weight_cache_budget
from mixdq.sensitivity.config import SweepConfig
from mixdq.sensitivity.driver import sweep
from mixdq.sensitivity.importers import import_mixdq
from mixdq.sensitivity.probes import unet_outputs
from mixdq.sensitivity.profile import LayerProfile, Profile

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
    "LayerProfile", "Plan", "Planner", "Profile", "import_mixdq", "plan_mixdq", "sweep", "unet_outputs",
    # memory and deployment
    "MemoryReport", "memory_report", "deploy",
    # errors
    "ConfigError", "DeployedModelError", "InfeasibleBudgetError", "InsufficientMemoryError", "MixDQError",
    "ModelNotFoundError", "NotCalibratedError", "UnknownLayerError", "UnsupportedBitsError", "UnsupportedModelError",
]  # fmt: skip

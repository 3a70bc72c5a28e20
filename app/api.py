"""The studio's named endpoints for notebooks and scripts (`gradio_client`):

    from gradio_client import Client
    client = Client("http://127.0.0.1:7860/")
    plan = client.predict("sdxl-turbo", 4.5, 0.5, api_name="/allocate")
    fp, quantized, metrics = client.predict("a large red circle on the left, white background", 0, 4.0,
                                            api_name="/compare")
"""

from __future__ import annotations

import mixdq

from . import downloads, images, library, views
from .registry import ModelEntry
from .settings import EMBEDDED


def entry_for(models: dict[str, ModelEntry], model: str) -> ModelEntry:
    if model in models:
        return models[model]
    if model in mixdq.ARCHITECTURES:
        raise mixdq.ConfigError(
            f"the studio has no sensitivity profile for {model}; measure one with `mixdq sensitivity "
            f"{model} -o {model}.json` and start it with `python app.py --model {model} --profile {model}.json`"
        )
    raise mixdq.ConfigError(f"unknown model {model!r}; this studio serves {', '.join(models)}")


def _number(name: str, value) -> float:
    if value is None or isinstance(value, bool):
        raise mixdq.ConfigError(f"{name} must be a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise mixdq.ConfigError(f"{name} must be a number, got {value!r}") from None


def allocate(models: dict[str, ModelEntry], model: str, avg_bits: float, content_weight: float = 0.5) -> dict:
    """The planner's weight allocation at `avg_bits`: every layer's bits ("fp" for floating point)
    and the totals."""
    avg_bits, content_weight = _number("avg_bits", avg_bits), _number("content_weight", content_weight)
    entry = entry_for(models, model)
    controls = views.Controls(content_weight=content_weight)
    plan = entry.planner(controls.plan_config()).plan(avg_bits=avg_bits)
    out = plan.to_dict()
    out.pop("activations")
    out.pop("act_avg_bits")
    return out


def compare(models: dict[str, ModelEntry], prompt: str, seed: int, avg_bits: float):
    """On the embedded model: FP and quantized image (64x64, uint8) of `prompt` at `seed`, under
    the planner's allocation at `avg_bits` weight bits with 8-bit activations, and metrics."""
    entry = models[EMBEDDED]
    prompt, seed = images.check_prompt(entry, prompt, seed)
    plan = entry.planner(views.Controls().plan_config()).plan(avg_bits=_number("avg_bits", avg_bits), act_avg_bits=8)
    fp, q, metrics = images.compare(entry, [prompt], seed, plan.allocation)
    metrics.update(avg_bits=round(plan.avg_bits, 4), weight_mb=round(plan.weight_mb, 4),
                   predicted_damage=plan.damage)
    return images.to_uint8(fp)[0], images.to_uint8(q)[0], metrics


def measure(models: dict[str, ModelEntry], avg_bits: float, num_prompts: int = 32) -> dict:
    """On the embedded model: the planner's allocation at `avg_bits` weight bits (A8) run on
    `num_prompts` held-out captions, measured against FP, beside the damage it predicted."""
    entry = models[EMBEDDED]
    plan = entry.planner(views.Controls().plan_config()).plan(avg_bits=_number("avg_bits", avg_bits), act_avg_bits=8)
    scores = images.measure(entry, [plan.allocation], int(_number("num_prompts", num_prompts)))[0]
    return scores | {"predicted_damage": plan.damage, "avg_bits": round(plan.avg_bits, 4),
                     "weight_mb": round(plan.weight_mb, 4)}


def export(models: dict[str, ModelEntry], model: str, avg_bits: float, content_weight: float = 0.5) -> list[str]:
    """`/allocate`'s allocation as files: allocation.json, MixDQ's YAML, and the profile as CSV."""
    entry = entry_for(models, model)
    controls = views.Controls(content_weight=_number("content_weight", content_weight))
    plan = entry.planner(controls.plan_config()).plan(avg_bits=_number("avg_bits", avg_bits))
    return [str(p) for p in downloads.allocation_files(entry, plan)]


def _compare_plan(models: dict[str, ModelEntry], avg_bits: float):
    """`/compare`'s plan: the embedded model at `avg_bits` weights, A8."""
    entry = models[EMBEDDED]
    return entry, entry.planner(views.Controls().plan_config()).plan(avg_bits=_number("avg_bits", avg_bits),
                                                                     act_avg_bits=8)


def export_deployed(models: dict[str, ModelEntry], avg_bits: float) -> tuple[str, dict]:
    """`/compare`'s allocation deployed, saved and zipped, with its sizes."""
    entry, plan = _compare_plan(models, avg_bits)
    result = entry.export("deployed", plan.allocation)
    return result.pop("archive"), result | {"predicted_mb": plan.weight_mb}


def export_openvino(models: dict[str, ModelEntry], avg_bits: float,
                    self_attention_bits: int | None = None) -> tuple[str, dict]:
    """`/compare`'s allocation as an OpenVINO IR, zipped, with its sizes and storage types;
    `self_attention_bits` (8, or None/0 for float as MixDQ) for self-attention's query and key."""
    entry, plan = _compare_plan(models, avg_bits)
    self_attention_bits = int(self_attention_bits) if self_attention_bits else None
    result = entry.export("openvino", plan.allocation, self_attention_bits)
    files = result["files"]
    return result.pop("archive"), result | {"unet_bytes": files["unet.xml"] + files["unet.bin"],
                                            "predicted_mb": plan.weight_mb}


def upload_profile(models: dict[str, ModelEntry], model: str, paths: list[str]) -> str:
    """Check an uploaded profile against `model`'s layers and serve it; the new picker key."""

    key, _ = library.accept_upload(models, entry_for(models, model), paths)
    return key

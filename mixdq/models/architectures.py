"""The models mixdq knows by name, and how each is meant to be sampled.

A full-size architecture's UNet config ships in `assets/architectures/`, so its inventory can be
studied without weights (`load_inventory("sdxl-turbo")`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mixdq.core.assets import ASSETS
from mixdq.embedded.dataset import calibration_captions
from mixdq.models.generation import DEFAULT_CALIBRATION_PROMPTS, CalibrationConfig


@dataclass(frozen=True)
class GenerationDefaults:
    """How a model is meant to be sampled, and the prompts to calibrate and measure it with
    (few-step models: no classifier-free guidance). `height`/`width` None: the model's own."""

    num_inference_steps: int
    guidance_scale: float
    height: int | None
    width: int | None
    prompts: tuple[str, ...] = DEFAULT_CALIBRATION_PROMPTS

    def as_kwargs(self) -> dict:
        """Pipeline-call keyword arguments."""
        kw = dict(num_inference_steps=self.num_inference_steps, guidance_scale=self.guidance_scale)
        if self.height is not None:
            kw.update(height=self.height, width=self.width)
        return kw

    def calibration(self, prompts: tuple[str, ...] | None = None, batch_size: int = 8) -> CalibrationConfig:
        """Calibration runs that match how the model is sampled."""
        return CalibrationConfig(
            prompts=tuple(prompts or self.prompts), num_inference_steps=self.num_inference_steps,
            guidance_scale=self.guidance_scale, height=self.height, width=self.width, batch_size=batch_size,
        )


@dataclass(frozen=True)
class Architecture:
    """A full-size model whose UNet config ships in assets/, so it can be studied without weights."""

    name: str
    hub_id: str
    pipeline: str
    defaults: GenerationDefaults

    @property
    def unet_config_path(self) -> Path:
        return ASSETS / "architectures" / self.name / "unet_config.json"


ARCHITECTURES: dict[str, Architecture] = {
    a.name: a
    for a in (
        Architecture("sdxl-turbo", "stabilityai/sdxl-turbo", "StableDiffusionXLPipeline",
                     GenerationDefaults(1, 0.0, 512, 512)),
        Architecture("sd-turbo", "stabilityai/sd-turbo", "StableDiffusionPipeline",
                     GenerationDefaults(1, 0.0, 512, 512)),
        # SD 1.5 is here for LCM-LoRA (MixDQ's third model: latent-consistency/lcm-lora-sdv1-5),
        # which samples in 4 steps without guidance once fused (pipe.load_lora_weights(...);
        # pipe.fuse_lora()); plain SD 1.5 wants ~25 steps with guidance 7.5
        Architecture("sd-1.5", "stable-diffusion-v1-5/stable-diffusion-v1-5", "StableDiffusionPipeline",
                     GenerationDefaults(4, 1.0, 512, 512)),
    )
}


def generation_defaults(spec: str | None = None) -> GenerationDefaults:
    """Steps, guidance, resolution and prompts for a model: the embedded model's own (4 steps,
    64 px, 32 captions of its data set), a known architecture's (by name or hub id), else one
    step without guidance at the model's own resolution with everyday prompts."""
    if spec is None:
        return GenerationDefaults(4, 0.0, 64, 64, prompts=calibration_captions(32))
    for arch in ARCHITECTURES.values():
        if spec in (arch.name, arch.hub_id):
            return arch.defaults
    return GenerationDefaults(1, 0.0, None, None)

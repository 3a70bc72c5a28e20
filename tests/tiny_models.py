"""Tiny SD- and SDXL-style pipelines with random weights, built from configs (no downloads).

Same classes and layer structure as the real models (attn1/attn2/ff, resnets, samplers), only
narrow: a full pipeline call takes well under a second on one CPU thread. And SD's layer shapes
alone (`sd_like_layers`), for kernel tests.
"""

from __future__ import annotations

import torch
from diffusers import (
    AutoencoderKL,
    EulerDiscreteScheduler,
    LCMScheduler,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from tokenizers.pre_tokenizers import ByteLevel
from torch import nn
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

PROMPTS = [
    "a small red circle on the left, blue background",
    "a large green square in the middle, white background",
    "a tiny yellow triangle at the top, black background",
    "a blue star on the right, grey background",
]


def char_tokenizer() -> CLIPTokenizer:
    """A real CLIPTokenizer whose vocabulary is single bytes (no merges): tiny, no download."""
    chars = sorted(ByteLevel.alphabet())
    tokens = ["<|startoftext|>", "<|endoftext|>"] + chars + [c + "</w>" for c in chars]
    return CLIPTokenizer(vocab={t: i for i, t in enumerate(tokens)}, merges=[], model_max_length=77)


def _text_config(tok: CLIPTokenizer, **kw) -> CLIPTextConfig:
    return CLIPTextConfig(
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_attention_heads=4,
        num_hidden_layers=2, max_position_embeddings=77, **kw,
    )


def _vae() -> AutoencoderKL:
    return AutoencoderKL(
        block_out_channels=(16, 32), in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        norm_num_groups=8, sample_size=32,
    )


def _unet(**kw) -> UNet2DConditionModel:
    return UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=2, sample_size=16, in_channels=4,
        out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(2, 4),
        use_linear_projection=True, norm_num_groups=8, **kw,
    )


def tiny_sd(seed: int = 0) -> StableDiffusionPipeline:
    torch.manual_seed(seed)
    tok = char_tokenizer()
    return StableDiffusionPipeline(
        vae=_vae(), text_encoder=CLIPTextModel(_text_config(tok)), tokenizer=tok,
        unet=_unet(cross_attention_dim=32), scheduler=LCMScheduler(steps_offset=1),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )


def tiny_sdxl(seed: int = 0) -> StableDiffusionXLPipeline:
    torch.manual_seed(seed)
    tok = char_tokenizer()
    return StableDiffusionXLPipeline(
        vae=_vae(), text_encoder=CLIPTextModel(_text_config(tok)),
        text_encoder_2=CLIPTextModelWithProjection(_text_config(tok, projection_dim=32)),
        tokenizer=tok, tokenizer_2=tok,
        unet=_unet(cross_attention_dim=64, addition_embed_type="text_time",
                   addition_time_embed_dim=8, projection_class_embeddings_input_dim=80,
                   transformer_layers_per_block=(1, 2)),
        scheduler=EulerDiscreteScheduler(timestep_spacing="trailing"),
    )


def sd_like_layers() -> tuple[nn.ModuleDict, dict[str, torch.Tensor]]:
    """Linear on tokens, and Conv2d as SD has them (3x3 padded, 3x3 stride 2, 1x1), plus groups;
    and an input for each."""
    torch.manual_seed(0)
    model = nn.ModuleDict({"proj": nn.Linear(64, 96), "conv": nn.Conv2d(16, 32, 3, padding=1),
                           "down": nn.Conv2d(16, 16, 3, padding=1, stride=2), "shortcut": nn.Conv2d(16, 32, 1),
                           "grouped": nn.Conv2d(16, 32, 3, padding=1, groups=4)})
    g = torch.Generator().manual_seed(1)
    x = {"proj": torch.randn(2, 9, 64, generator=g) * 3, **{n: torch.randn(2, 16, 10, 10, generator=g)
                                                            for n in ("conv", "down", "shortcut", "grouped")}}
    return model, x

"""The embedded pipeline's parts: a small SD-style VAE, causal CLIP text encoder, UNet, sampler."""

from __future__ import annotations

from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

IMAGE_SIZE = 64
LATENT_CHANNELS = 8
LATENT_SIZE = IMAGE_SIZE // 8
MAX_TOKENS = 16
TEXT_DIM = 64


def make_vae() -> AutoencoderKL:
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=LATENT_CHANNELS,
        block_out_channels=(16, 32, 64, 64), layers_per_block=1, norm_num_groups=8,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        sample_size=IMAGE_SIZE,
    )


def make_text_encoder(tokenizer) -> CLIPTextModel:
    return CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer), hidden_size=TEXT_DIM, intermediate_size=4 * TEXT_DIM,
            num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=MAX_TOKENS,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )


def make_unet() -> UNet2DConditionModel:
    """Cross-attention transformer blocks like SD's (attn1, attn2, ff), at 8x8, 4x4 and 2x2."""
    return UNet2DConditionModel(
        sample_size=LATENT_SIZE, in_channels=LATENT_CHANNELS, out_channels=LATENT_CHANNELS,
        block_out_channels=(64, 128, 128), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        mid_block_type="UNetMidBlock2DCrossAttn", cross_attention_dim=TEXT_DIM,
        attention_head_dim=32, norm_num_groups=16, use_linear_projection=True,
    )


def make_scheduler() -> DDIMScheduler:
    # Few-step sampling from pure noise: trailing timesteps and a zero terminal SNR.
    return DDIMScheduler(
        num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085,
        beta_end=0.012, prediction_type="v_prediction", timestep_spacing="trailing",
        rescale_betas_zero_snr=True, clip_sample=False, set_alpha_to_one=True, steps_offset=1,
    )

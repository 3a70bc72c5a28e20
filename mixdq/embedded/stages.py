"""Training stages of the embedded model, each resumable: `python -m mixdq.embedded train STAGE`."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL, StableDiffusionPipeline
from tqdm.auto import tqdm

from mixdq.embedded import dataset
from mixdq.embedded.classifier import AttributeClassifier, labels
from mixdq.embedded.components import IMAGE_SIZE, make_scheduler, make_text_encoder, make_unet, make_vae
from mixdq.embedded.tokenizer import build_tokenizer
from mixdq.embedded.training import save_atomic, train

KL_WEIGHT = 1e-6
STAGES = ("vae", "latents", "text2image", "classifier")


def batch_seed(seed: int, stage: str, step: int) -> int:
    """A distinct, reproducible data seed for every (run seed, stage, step)."""
    return (seed * 1_000_003 + step) * 4 + STAGES.index(stage)


def train_vae(work: Path, steps: int = 2000, batch: int = 32, seed: int = 0):
    torch.manual_seed(seed)
    vae = make_vae()

    def loss(step: int) -> torch.Tensor:
        x, _ = dataset.sample(batch, batch_seed(seed, "vae", step), size=IMAGE_SIZE)
        posterior = vae.encode(x).latent_dist
        y = vae.decode(posterior.sample()).sample
        return (y - x).abs().mean() + (y - x).square().mean() + KL_WEIGHT * posterior.kl().mean()

    train("vae", vae, loss, steps, work / "vae.pt", lr=1e-3)
    vae.save_pretrained(work / "vae")
    return vae


def encode_pool(work: Path, n: int = 40_000, seed: int = 0, chunk: int = 256) -> dict:
    """Encode `n` training images once: the text-to-image stage samples from these posteriors."""
    path = work / "latents.pt"
    if path.exists():
        return torch.load(path, weights_only=True)
    vae = AutoencoderKL.from_pretrained(work / "vae").eval()
    means, stds, captions = [], [], []
    with torch.no_grad():
        for i in tqdm(range(0, n, chunk), desc="encoding"):
            x, scenes = dataset.sample(min(chunk, n - i), batch_seed(seed, "latents", i), size=IMAGE_SIZE)
            dist = vae.encode(x).latent_dist
            means.append(dist.mean)
            stds.append(dist.std)
            captions += [s.caption for s in scenes]
    pool = {"mean": torch.cat(means), "std": torch.cat(stds)}
    pool["scale"] = torch.tensor(1.0 / pool["mean"].std().item())
    tok = build_tokenizer()
    pool["ids"] = tok(captions, padding="max_length", max_length=tok.model_max_length,
                      truncation=True, return_tensors="pt").input_ids
    save_atomic(pool, path)
    return pool


class TextToImage(torch.nn.Module):
    """The trained pair: a text encoder and a UNet (one optimizer, one checkpoint)."""

    def __init__(self, tokenizer):
        super().__init__()
        self.text_encoder = make_text_encoder(tokenizer)
        self.unet = make_unet()


def train_text2image(work: Path, steps: int = 8000, batch: int = 64, seed: int = 0):
    pool = encode_pool(work, seed=seed)
    tokenizer = build_tokenizer()
    torch.manual_seed(seed)
    model = TextToImage(tokenizer)
    scheduler = make_scheduler()
    n = len(pool["ids"])

    def loss(step: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(batch_seed(seed, "text2image", step))
        idx = torch.randint(0, n, (batch,), generator=g)
        eps = torch.randn(pool["mean"][idx].shape, generator=g)
        latents = (pool["mean"][idx] + pool["std"][idx] * eps) * pool["scale"]
        noise = torch.randn(latents.shape, generator=g)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (batch,), generator=g)
        noisy = scheduler.add_noise(latents, noise, t)
        text = model.text_encoder(pool["ids"][idx])[0]
        v = model.unet(noisy, t, text).sample
        return (v - scheduler.get_velocity(latents, noise, t)).square().mean()

    train("text2image", model, loss, steps, work / "text2image.pt", lr=5e-4, weight_decay=0.01)
    vae = AutoencoderKL.from_pretrained(work / "vae")
    vae.register_to_config(scaling_factor=float(pool["scale"]))
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=model.text_encoder, tokenizer=tokenizer, unet=model.unet,
        scheduler=scheduler, safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(work / "pipeline")
    return pipe


def train_classifier(work: Path, steps: int = 1000, batch: int = 64, seed: int = 0):
    """Trained on every scene, held-out captions included: it is a measuring instrument."""
    torch.manual_seed(seed)
    model = AttributeClassifier()
    every_scene = dataset.all_scenes()

    def loss(step: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(batch_seed(seed, "classifier", step))
        picked = [every_scene[i] for i in torch.randint(0, len(every_scene), (batch,), generator=g)]
        rng = np.random.default_rng(batch_seed(seed, "classifier", step))
        x = torch.from_numpy(np.stack([dataset.render(s, rng) for s in picked]))
        x = x.permute(0, 3, 1, 2) * 2 - 1
        logits, truth = model(x), labels(picked)
        return sum(torch.nn.functional.cross_entropy(logits[k], truth[k]) for k in logits)

    train("classifier", model, loss, steps, work / "classifier.pt", lr=2e-3)
    model.save(work / "classifier")
    return model


def export(work: Path, pipeline_dir: Path, classifier_dir: Path) -> None:
    """Copy the trained pipeline and classifier into place (assets/ for the shipped model)."""
    for src, dst in ((work / "pipeline", pipeline_dir), (work / "classifier", classifier_dir)):
        if not src.exists():
            raise FileNotFoundError(f"{src} is missing: train its stage first")
        tmp = dst.with_name(f".{dst.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(src, tmp)
        shutil.rmtree(dst, ignore_errors=True)
        tmp.rename(dst)

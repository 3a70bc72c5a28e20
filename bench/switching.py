"""How cheap is switching bit-widths? Prints measured ratios, all from this one run.

    .venv/bin/python bench/switching.py      (after ./run.sh test has installed the project)

1. Flip one SDXL-sized layer (ff.net.0.proj, 1280 -> 10240) to a bit-width seen before (cache
   hit, with `set_weight_cache_budget` room for it) vs quantizing its weight afresh.
2. Apply a whole allocation to the full-size 794-layer SDXL-Turbo UNet (meta device, no weights).
3. The embedded model's pipeline call (4 prompts, its own steps and size): simulated W8A8 vs
   floating point.

Figures: bench/results/switching-DATE.json.
"""

from __future__ import annotations

import time

import torch
from machine import save, start

import mixdq
from mixdq.models.inventory import meta_unet
from mixdq.quant.layers import QuantLinear, quant_layers


def best_of(fn, repeat=5, number=1) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - t) / number)
    return min(times)


def main() -> None:
    start(1)
    torch.manual_seed(0)

    linear = torch.nn.Linear(1280, 10240)
    layer = QuantLinear.from_float(linear, "mid_block.attentions.0.transformer_blocks.0.ff.net.0.proj",
                                   mixdq.QuantConfig())

    def fresh():
        layer.clear_cache()
        layer.quantized_weight(4)

    def flip():
        layer.weight_bits = 4
        layer.quantized_weight(4)
        layer.weight_bits = 8
        layer.quantized_weight(8)

    fresh_s = best_of(fresh)
    # a cache hit needs room for the other width's copy (the default budget, 0, keeps one per layer)
    mixdq.set_weight_cache_budget(4 * linear.weight.nbytes)
    flip_s = best_of(flip, number=1000) / 2
    mixdq.set_weight_cache_budget(0)
    print(f"[1] flip one 13.1 M-param layer: cached {flip_s * 1e6:.1f} us, "
          f"fresh quantization {fresh_s * 1e3:.1f} ms  -> {fresh_s / flip_s:,.0f}x cheaper")

    unet = meta_unet(mixdq.load_unet_config("sdxl-turbo"))
    mixdq.prepare(unet)
    names = list(quant_layers(unet))
    a8, a4 = (mixdq.Allocation.uniform(names, b, None) for b in (8, 4))
    toggle = iter([a8, a4] * 10_000)
    apply_s = best_of(lambda: mixdq.apply_allocation(unet, next(toggle)), number=20)
    print(f"[2] apply a {len(names)}-layer allocation (SDXL-Turbo UNet): {apply_s * 1e3:.2f} ms "
          f"-> {1 / apply_s:,.0f} allocations per second")

    pipe = mixdq.load_pipeline()
    pipe.set_progress_bar_config(disable=True)
    defaults = mixdq.generation_defaults()
    prompts = list(defaults.prompts[:4])
    generate = lambda: mixdq.generate_images(pipe, prompts, **defaults.as_kwargs())
    fp_s = best_of(generate)
    inv = mixdq.build_inventory(pipe.unet)
    mixdq.quantize_(pipe, mixdq.Allocation.uniform(inv.names, 8, 8), calibration=defaults.calibration())
    generate()  # fill the weight cache
    q_s = best_of(generate)
    print(f"[3] embedded model, {len(prompts)} prompts x {defaults.num_inference_steps} steps: FP {fp_s * 1e3:.1f} ms, "
          f"simulated W8A8 {q_s * 1e3:.1f} ms -> {q_s / fp_s:.2f}x")
    save("switching", dict(flip_cached_us=flip_s * 1e6, flip_fresh_ms=fresh_s * 1e3, flip_ratio=fresh_s / flip_s,
                           apply_layers=len(names), apply_ms=apply_s * 1e3, prompts=len(prompts),
                           steps=defaults.num_inference_steps, fp_ms=fp_s * 1e3, w8a8_ms=q_s * 1e3,
                           w8a8_x_fp=q_s / fp_s))

if __name__ == "__main__":
    main()

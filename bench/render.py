"""Puts the figures of bench/results/*.json into the docs, so that no page quotes a number that no
committed result holds.

    .venv/bin/python bench/render.py           # rewrite every page's figure blocks in place
    .venv/bin/python bench/render.py --check   # exit 1 if a page is not what rendering gives

A page holds a block between `<!-- figures:ID -->` and `<!-- /figures:ID -->`. BLOCKS says, per ID,
which result it shows (the newest `bench/results/KEY-YYYY-MM-DD.json`, KEY being a bench's name and
tag as `machine.save` writes them), what of it, and on which pages. Every block starts with the
date, the CPU (model, vector flags), the torch threads and the command that measures it; a block
whose result does not exist yet says which command to run. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DATED = re.compile(r"^(?P<key>.+)-(?P<date>\d{4}-\d{2}-\d{2})\.json$")
FIELD = re.compile(r"\{([^{}:]+)(?::([^{}]+))?\}")

UNITS = {
    "GB": lambda v: f"{v / 1e9:,.2f} GB",
    "MB": lambda v: f"{v / 1e6:,.1f} MB",
    "s": lambda v: f"{v:,.1f} s",
    "ms": lambda v: f"{v:,.1f} ms",
    "s>ms": lambda v: f"{v * 1e3:,.1f} ms",
    "us": lambda v: f"{v:,.1f} us",
    "x": lambda v: f"{v:.2f}x",
    "x3": lambda v: f"{v:.3f}x",
    "pct": lambda v: f"{v:.3f} %",
    "dB": lambda v: f"{v:.1f} dB",
    "dBs": lambda v: " / ".join(f"{x:.1f}" for x in v) + " dB",
    "kernels": lambda v: ", ".join(f"{k} {n}" for k, n in v.items() if n),
    "yes": lambda v: "yes" if v else "no",
}


@dataclass(frozen=True)
class Block:
    key: str  # which result: bench/results/KEY-DATE.json, the newest
    command: str  # what measures it
    pages: tuple[str, ...]  # where it appears (paths from the repository root)
    rows: str = ""  # a dotted path to a list of dicts (a table), or to a dict of them (key -> "name")
    columns: tuple[tuple[str, str, str], ...] = ()  # (header, field of a row, unit or format spec)
    notes: tuple[str, ...] = ()  # lines with {dotted.path:unit} fields


DEPLOY_COLUMNS = (("setting", "name", ""), ("avg bits", "bits", ".2f"), ("UNet bytes", "unet_bytes", "MB"),
                  ("x FP32", "unet_bytes_x_fp32", "x3"), ("peak RSS", "peak_rss_bytes", "MB"),
                  ("x FP32", "peak_rss_x_fp32", "x"), ("latency", "latency_s", "s>ms"),
                  ("x FP32", "latency_x_fp32", "x"), ("layers per kernel", "kernels", "kernels"))
OV_COLUMNS = (("setting", "setting", ""), ("bytes on disk", "bytes", "MB"), ("x FP32", "bytes_x_fp32", "x3"),
              ("latency, f32 hint", "latency_f32_s", "s>ms"), ("default hint", "latency_default_s", "s>ms"),
              ("x PyTorch FP32, f32", "x_fp32_f32", "x"), ("default", "x_fp32_default", "x"),
              ("x NNCF PTQ, f32", "x_nncf_f32", "x"), ("default", "x_nncf_default", "x"),
              ("peak RSS", "peak_rss_bytes", "MB"))
OV_VAE = ("VAE decode of one image (float): PyTorch {models.%s.vae_decode_s.pytorch:s>ms}, OpenVINO f32 hint "
          "{models.%s.vae_decode_s.openvino f32:s>ms}, default hint {models.%s.vae_decode_s.openvino default:s>ms}.")
OPENVINO = "python bench/openvino_runtime.py --rounds 2"
DEPLOY = "python bench/deploy.py"
HEADLINE = "README.md"
BENCHMARKS = "docs/benchmarks.md"

BLOCKS = {
    "headline-studio_fullsize": Block(
        "studio_fullsize-sd-turbo-cpu", "python bench/studio_fullsize.py", (HEADLINE, "docs/studio.md"),
        notes=("Full-size SD-Turbo (fp32, random weights, {size} px images) driven through the studio's own code "
               "path: the session peaks at {summary.peak_rss:GB} RSS, the float pipeline's {summary.float_peak_rss:GB} "
               "+ {summary.peak_over_float_in_unets:x} its {summary.unet_bytes:GB} UNet (target <= 1.1x).",)),
    "headline-deploy": Block(
        "deploy-embedded-sd-turbo", DEPLOY, (HEADLINE,),
        notes=("Deployed full-size SD-Turbo UNet, W4A8: {models.sd-turbo.w4a8.unet_bytes_x_fp32:x3} the FP32 bytes, "
               "{models.sd-turbo.w4a8.latency_x_fp32:x} its latency (target <= 0.6x at <= 0.15x bytes).",)),
    "headline-studio": Block(
        "studio", "python bench/studio.py", (HEADLINE,),
        notes=("The studio on the embedded model, CPU: an FP + quantized image pair in {image_pair.median_ms:ms} "
               "(median, FP cached); in chromium on SDXL-Turbo's 794-layer profile, a budget-slider drag repaints "
               "the allocation {slider_browser.sdxl-turbo, mouse drag.median_ms:ms} median, "
               "{slider_browser.sdxl-turbo, mouse drag.p95_ms:ms} p95 after each move, drawn in the page from "
               "every position solved ahead, with no server call.",)),
    "studio_fullsize": Block(
        "studio_fullsize-sd-turbo-cpu", "python bench/studio_fullsize.py", ("docs/studio.md", "docs/spaces.md"),
        rows="steps", columns=(("step", "step", ""), ("seconds", "seconds", ".1f"), ("peak RSS", "peak_rss", "GB"),
                               ("quantized weights held", "cached_weights", "GB")),
        notes=("The float pipeline alone, running the same batches: peak {float.peak_rss:GB}, one image "
               "{float.image_s:s}. The session's peak: {summary.peak_rss:GB} = float + "
               "{summary.peak_over_float_in_unets:x} its {summary.unet_bytes:GB} UNet ({unet_params:,} parameters).",)),
    "studio": Block(
        "studio", "python bench/studio.py", ("docs/studio.md",),
        rows="slider_browser", columns=(("slider, input to bits map painted", "setting", ""),
                                        ("median", "median_ms", "ms"), ("p95", "p95_ms", "ms"), ("moves", "moves", ""),
                                        ("server calls meanwhile", "server_calls", "")),
        notes=("Per control change, every slider position solved ahead and sent to the page: SDXL-Turbo "
               "{slider_server.sdxl-turbo.positions} positions ({slider_server.sdxl-turbo.step_mb:g} MB apart) in "
               "{slider_server.sdxl-turbo.solve_s:s}, {slider_server.sdxl-turbo.json_kb:,.0f} kB of JSON; the embedded "
               "model {slider_server.embedded.positions} positions in {slider_server.embedded.solve_s:s}, "
               "{slider_server.embedded.json_kb:,.0f} kB. On release, the exact solve and both figures: "
               "{slider_server.sdxl-turbo.release_median_ms:ms} (SDXL-Turbo), {slider_server.embedded.release_median_ms:ms} "
               "(embedded), median.",
               "Embedded model, FP + quantized image pair, FP cached: {image_pair.median_ms:ms} median, "
               "{image_pair.max_ms:ms} max (target <= 500 ms).",
               "In chromium, embedded model, a click on a row of the sensitivity table to that layer's three images "
               "(FP, quantized alone, difference) painted: {one_layer_browser.median_ms:ms} median, "
               "{one_layer_browser.p95_ms:ms} p95 over {one_layer_browser.clicks} clicks (target p95 <= 500 ms).")),
    "content_quality": Block(
        "content_quality", "python bench/content_quality.py", ("app/texts/content_quality.md",),
        rows="groups", columns=(("width, group", "setting", ""), ("layers", "layers", ""),
                                ("mean SSIM loss", "ssim_loss", ".4f"), ("mean SQNR, dB", "sqnr_db", ".1f"),
                                ("caption alignment", "alignment", ".3f"), ("its drop from FP", "alignment_drop", ".3f"),
                                ("the worst layer", "worst_layer", ""), ("its SSIM loss", "worst_ssim_loss", ".4f")),
        notes=("- **2 bits.** {verdicts.2.text}.",
               "- **3 bits.** {verdicts.3.text}.",
               "- **4 bits.** {verdicts.4.text}.",
               "- Within a group, SSIM loss and SQNR rank the layers almost alike at 2 bits (Spearman "
               "{rank_agreement.2 bits, content.spearman:.2f} for content, {rank_agreement.2 bits, quality.spearman:.2f} "
               "for quality layers), less so as the damage shrinks (4 bits: "
               "{rank_agreement.4 bits, content.spearman:.2f} and {rank_agreement.4 bits, quality.spearman:.2f}).")),
    "content_quality-summary": Block(
        "content_quality", "python bench/content_quality.py", ("app/texts/content_quality.md",),
        notes=("**On the embedded model,** {conclusion}",)),
    "switching": Block(
        "switching", "python bench/switching.py", ("docs/engine.md",),
        notes=("Flip one 13.1 M-parameter layer to a width seen before: {flip_cached_us:us}; quantizing it afresh "
               "{flip_fresh_ms:ms} ({flip_ratio:,.0f}x).",
               "Apply a {apply_layers}-layer allocation to the SDXL-Turbo UNet: {apply_ms:.2f} ms.",
               "Embedded model, {prompts} prompts x {steps} steps: FP {fp_ms:ms}, simulated W8A8 {w8a8_ms:ms} "
               "({w8a8_x_fp:x}).")),
    "allocation_speed": Block(
        "allocation_speed", "python bench/allocation_speed.py", ("docs/sensitivity-and-allocation.md",),
        rows="solver", columns=(("objective", "objective", ""), ("live median", "live_median_ms", "ms"),
                                ("live max", "live_max_ms", "ms"), ("exact (CBC) median", "exact_median_ms", "ms"),
                                ("live faster", "speedup", ",.0f"), ("gap median", "gap_median_pct", "pct"),
                                ("gap max", "gap_max_pct", "pct"), ("optimum matched", "optimum_matched", "")),
        notes=("{layers}-layer SDXL-Turbo profile, {budgets} budgets (targets: live <= 50 ms, gap <= 0.1 %).",
               "Full sensitivity profile of the embedded model: {sweep.minutes:.1f} min, {sweep.probes} probes, "
               "{sweep.threads} threads ({sweep.source}).")),
    "allocation_payoff": Block(
        "allocation_payoff", "python bench/allocation_payoff.py", ("docs/sensitivity-and-allocation.md",),
        rows="results", columns=(("avg bits", "bits", ".2f"), ("method", "method", ""),
                                 ("weight MB", "weight_mb", ".3f"), ("bits", "avg_bits", ".2f"),
                                 ("alignment", "alignment", ".3f"), ("Fréchet", "frechet", ".2f"),
                                 ("PSNR", "psnr", "dB"), ("SSIM", "ssim", ".3f")),
        notes=("Embedded model, weights only, {captions} held-out captions; float alignment {float_alignment:.3f}.",)),
    "sweep_scaling": Block(
        "sweep_scaling", "python bench/sweep_scaling.py", ("docs/distributed.md",),
        notes=("{probes} probes ({layers} layers), {prompts} prompts: serial, one thread {serial_s:s} "
               "({serial_probe_s:.2f} s per probe); {workers} Ray workers x 1 thread {ray_s:s}, including "
               "{worker_startup_s:s} of worker start-up, plus {ray_start_s:s} to start Ray.",
               "Speed-up: {speedup_all:x} with every start-up cost (target >= 1.6x), {speedup_running:x} on a running "
               "cluster, {speedup_probing:x} probing alone; the driver adds {driver_ms_per_probe:ms} per probe; "
               "profiles agree score for score: {profiles_agree:yes}.")),
    "deploy-sd-turbo": Block(
        "deploy-embedded-sd-turbo", DEPLOY, ("docs/deployment.md",), rows="models.sd-turbo", columns=DEPLOY_COLUMNS,
        notes=("Full-size SD-Turbo UNet (random weights), one 512x512 call, each setting in a fresh process "
               "(targets: W4A8 and mixed <= 0.6x FP32 latency at <= 0.15x bytes, W8A8 <= 0.5x).",)),
    "deploy-embedded": Block(
        "deploy-embedded-sd-turbo", DEPLOY, ("docs/deployment.md",), rows="models.embedded", columns=DEPLOY_COLUMNS,
        notes=("Embedded model, one 64x64 image, 4 steps, eager (target: every setting <= 1.15x FP32).",)),
    "deploy-compiled": Block(
        "deploy-embedded-compile-aot", "python bench/deploy.py --models embedded --compile --aot",
        ("docs/deployment.md",), rows="models.embedded",
        columns=(*DEPLOY_COLUMNS[:-1], ("x FP32 compiled", "latency_x_fp32_compiled", "x"), DEPLOY_COLUMNS[-1]),
        notes=("Embedded model: eager, `+compile` (deploy(compile=True)), `+aot` (the saved package, loaded in a "
               "process that never compiled; bytes: the package on disk).",)),
    "deploy-cuda": Block(
        "deploy-sd-turbo-cuda-float16", "python bench/deploy.py --models sd-turbo --settings w8,w4 --device cuda "
        "--dtype float16", ("docs/deployment.md",), rows="models.sd-turbo",
        columns=(*DEPLOY_COLUMNS[:-1], ("peak GPU", "peak_gpu_bytes", "MB"), ("x fp16", "peak_gpu_x_fp32", "x"),
                 DEPLOY_COLUMNS[-1]),
        notes=("GPU: {gpu}; the float baseline (\"fp32\" row) is the UNet in {dtype}.",)),
    "deploy-cuda-int": Block(
        "deploy-sdxl-turbo-compile-cuda-float16", "python bench/deploy.py --models sdxl-turbo "
        "--settings w8a8,w4a8,mixed --compile --device cuda --dtype float16 (bench/gpu_checks.sh)",
        ("docs/deployment.md",),
        rows="models.sdxl-turbo",
        columns=(*DEPLOY_COLUMNS[:-1], ("peak GPU", "peak_gpu_bytes", "MB"), ("x fp16", "peak_gpu_x_fp32", "x"),
                 ("x fp16 compiled", "latency_x_fp32_compiled", "x"), DEPLOY_COLUMNS[-1]),
        notes=("GPU: {gpu}; the float baseline (\"fp32\" rows) is the UNet in {dtype}. SDXL-Turbo's UNet; "
               "targets: W8A8 <= 0.93x compiled fp16 latency at <= 0.52x its peak memory, mixed ~4-bit <= 1.0x at "
               "<= 0.35x.",)),
    "unpack": Block(
        "unpack", "python bench/unpack.py", ("docs/deployment.md",),
        rows="rows", columns=(("bits", "bits", ""), ("split planes, in place, ms", "split_ms", ".2f"),
                              ("interleaved, then copied, ms", "interleaved_ms", ".2f"), ("ratio", "ratio", "x")),
        notes=("One chunk of {mib:.1f} MiB of weights.",)),
    "weight_only": Block(
        "weight_only", "python bench/weight_only.py", ("docs/deployment.md",),
        rows="rows", columns=(("Linear", "shape", ""), ("kernel", "kernel", ""), ("ms", "ms", ".2f"),
                              ("x float", "x_float", "x"), ("max rel. diff", "max_rel_diff", ".1e"))),
    "openvino_parity": Block(
        "openvino_parity", "python bench/openvino_parity.py", ("docs/deployment.md",),
        rows="settings", columns=(("allocation", "setting", ""), ("UNet output SQNR per step", "unet_sqnr_db", "dBs"),
                                  ("image PSNR", "image_psnr_db", "dB")),
        notes=("Embedded model, {captions} held-out captions, f32 hint: the export against the simulated model.",)),
    "openvino_runtime-sd-turbo": Block(
        "openvino_runtime-embedded-sd-turbo", OPENVINO, ("docs/deployment.md",),
        rows="models.sd-turbo.table", columns=OV_COLUMNS, notes=(OV_VAE % (("sd-turbo",) * 3),)),
    "openvino_runtime-embedded": Block(
        "openvino_runtime-embedded-sd-turbo", OPENVINO, ("docs/deployment.md",),
        rows="models.embedded.table", columns=OV_COLUMNS, notes=(OV_VAE % (("embedded",) * 3),)),
    "openvino_runtime-fidelity": Block(
        "openvino_runtime-embedded-sd-turbo", OPENVINO, ("docs/deployment.md",),
        rows="models.embedded.fidelity", columns=(("setting", "name", ""), ("alignment", "alignment", ".3f"),
                                                  ("Fréchet", "frechet", ".3f"), ("PSNR", "psnr", "dB")),
        notes=("Embedded model, {captions} held-out captions, f32 hint, against PyTorch FP32's images.",)),
    "embedded_model": Block(
        "embedded_model", "python bench/embedded_model.py", ("docs/embedded-model.md",),
        rows="quantized", columns=(("setting", "setting", ""), ("BOS-aware", "bos_aware", "yes"),
                                   ("alignment", "alignment", ".3f"), ("Fréchet", "frechet", ".2f"),
                                   ("PSNR", "psnr", "dB"), ("SSIM", "ssim", ".3f")),
        notes=("Classifier on {classifier_images} data-set images: all five attributes right {classifier_all_right:.3f} "
               "(bar >= 0.98 per attribute).",
               "Float alignment on {captions} held-out captions, 1 / 2 / 4 steps: {float_alignment.1 steps:.3f} / "
               "{float_alignment.2 steps:.3f} / {float_alignment.4 steps:.3f} (bar >= 0.90 at 4 steps).",
               "One 64x64 image, {steps} steps, one thread: {image_ms_median:ms} median (bar <= 300 ms).",
               "Uniform quantization against the float images, same seeds:")),
}


def newest() -> dict[str, Path]:
    """The newest result file of each key."""
    found: dict[str, tuple[str, Path]] = {}
    for path in RESULTS.glob("*.json"):
        m = DATED.match(path.name)
        if m and (m["key"] not in found or m["date"] > found[m["key"]][0]):
            found[m["key"]] = (m["date"], path)
    return {key: path for key, (_, path) in found.items()}


def get(data, path: str):
    """`data` at a dotted path; in a list, a part is an index or the value of a row's "setting"."""
    for part in path.split(".") if path else ():
        if isinstance(data, list):
            data = data[int(part)] if part.lstrip("-").isdigit() else next(
                (row for row in data if isinstance(row, dict) and row.get("setting") == part), None)
        elif isinstance(data, dict) and part in data:
            data = data[part]
        else:
            return None
    return data


def fmt(value, unit: str) -> str:
    if value is None:
        return ""
    if unit in UNITS:
        return UNITS[unit](value)
    return format(value, unit)


def cell(text: str) -> str:
    return text.replace("|", "\\|")


def table(rows, columns) -> list[str]:
    if isinstance(rows, dict):
        rows = [{"name": k, **v} if isinstance(v, dict) else {"name": k, "value": v} for k, v in rows.items()]
    lines = ["| " + " | ".join(h for h, _, _ in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(fmt(get(row, field), unit)) for _, field, unit in columns) + " |" for row in rows]
    return lines


def render(block: Block, path: Path | None) -> str:
    """The markdown of one block: where and how it was measured, then its notes and table."""
    if path is None:
        return f"not measured yet: run `{block.command}`."
    data = json.loads(path.read_text())
    machine = data.get("machine") or data.get("cpu") or {}
    date = data.get("date") or DATED.match(path.name)["date"]
    parts = [f"*Measured {date} on {machine.get('model', 'an unknown CPU')} "
             f"({' '.join(machine.get('flags', [])) or 'no AVX2 or newer'}), {machine.get('threads', '?')} torch "
             f"threads, torch {machine.get('torch', '?')}: `{block.command}` "
             f"(`{path.relative_to(ROOT).as_posix()}`).*",
             "\n".join(FIELD.sub(lambda m: fmt(get(data, m[1]), m[2] or ""), note) for note in block.notes)]
    if block.rows:
        parts.append("\n".join(table(get(data, block.rows) or [], block.columns)))
    return "\n\n".join(part for part in parts if part)


def rewrite(page: str, blocks: dict[str, str]) -> str:
    """`page` with every figure block's content replaced; unknown or missing markers are errors."""
    found = set(re.findall(r"<!-- figures:(\S+) -->", page))
    if found - set(blocks):
        raise SystemExit(f"unknown figure blocks {sorted(found - set(blocks))}: add them to BLOCKS in bench/render.py")
    if set(blocks) - found:
        raise SystemExit(f"missing figure blocks {sorted(set(blocks) - found)}: add their markers to the page")
    for name, text in blocks.items():
        pattern = re.compile(rf"(<!-- figures:{re.escape(name)} -->).*?(<!-- /figures:{re.escape(name)} -->)", re.S)
        if not pattern.search(page):
            raise SystemExit(f"figure block {name} has no closing <!-- /figures:{name} -->")
        page = pattern.sub(lambda m, text=text: f"{m[1]}\n\n{text}\n\n{m[2]}", page)
    return page


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a page is out of date")
    args = parser.parse_args()
    results = newest()
    pages: dict[str, dict[str, str]] = {}
    for name, block in BLOCKS.items():
        for page in block.pages:
            pages.setdefault(page, {})[name] = render(block, results.get(block.key))
    stale = []
    for page, blocks in pages.items():
        path = ROOT / page
        before = path.read_text(encoding="utf-8")
        after = rewrite(before, blocks)
        if after != before:
            stale.append(page)
            if not args.check:  # readers see the old page or the new one, never half of it
                tmp = path.with_name(f".{path.name}.tmp")
                tmp.write_text(after, encoding="utf-8")
                os.replace(tmp, path)
    verb = "out of date" if args.check else "rewritten"
    print(f"{verb}: {', '.join(stale)}" if stale else "every page is up to date")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())

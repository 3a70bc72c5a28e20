"""MixDQ on OpenVINO against the CPU runtime people pick: OpenVINO FP32 and NNCF's own INT8/INT4.

    .venv/bin/python bench/openvino_runtime.py [--models embedded,sd-turbo] [--threads 2] [--captions 128]
        [--settings a,b] [--rounds N] [--json FILE]

Settings, each prepared in its own process (artifacts under out/bench-openvino/MODEL/SETTING)
and measured in another, fresh one per precision hint, so no setting's memory or threads leak
into the next:
  pt-fp32        PyTorch FP32 eager (the 1x of every ratio)
  pt-w8a8        our PyTorch deploy, W8A8 (mixdq.deploy.deploy, kernels timed per layer)
  pt-mixed       our PyTorch deploy, the mixed ~4-bit A8 allocation
  ov-fp32        OpenVINO FP32 (the float UNet as `ov.convert_model` converts it: what NNCF's
                 methods start from, as a user of them gets it)
  nncf-ptq       NNCF INT8 post-training quantization (nncf.quantize, default settings)
  nncf-int8-wc   NNCF INT8 weight compression (nncf.compress_weights, default: INT8_ASYM)
  nncf-int4-wc   NNCF INT4 weight compression (mode INT4_SYM, its defaults: group 128, ratio 1;
                 smaller groups where channels are not a multiple of 128: its ADJUST fallback)
  mixdq-w8a8     our export (mixdq.deploy.export_openvino), W8A8
  mixdq-mixed    our export, the mixed ~4-bit A8 allocation
  mixdq-w8a8-qk  our export, W8A8 with self-attention's query and key on 8-bit grids too
                 (QuantConfig(self_attention_bits=8): what NNCF's PTQ does to attention)
  mixdq-mixed-qk our export, the mixed ~4-bit A8 allocation, the same
  mixdq-w8       (embedded) our export, 8-bit weights, float activations: NNCF INT8 WC's equal
  mixdq-w8-asym  (embedded) the same with asymmetric weights (a zero-point per channel, as NNCF's)
  mixdq-mixed-w  (embedded) our export, the mixed ~4-bit weights, float activations
Mixed ~4-bit: embedded, the planner on the shipped profile at 4 average bits, A8; SD-Turbo (no
profile here, random weights) as in bench/deploy.py: 3-bit ff.net.2, 8-bit conv_in/conv_out/time
embedding, 4-bit the rest, A8. NNCF PTQ and our activation ranges calibrate on the same inputs:
embedded, the UNet inputs of the 32 calibration captions over 4 steps; SD-Turbo, 8 random inputs.
Also the VAE decoder (float; the export writes it beside the UNet) against PyTorch's.
Measured: one UNet call (embedded: batch 1 at 64x64 pixels; SD-Turbo: batch 1 at 512x512, the
full-size 865 M-parameter UNet with random weights) with OpenVINO's f32 precision hint and with
its default one (bf16 on CPUs that have it); bytes on disk (IR .xml + .bin; PyTorch: the
safetensors weights); peak RSS of the measuring process (load, compile, calls). Embedded only:
fidelity of 128 held-out captions (caption i, seed i, 4 steps, f32 hint) against PyTorch FP32's
images: caption alignment, Fréchet distance (classifier features), PSNR.
Figures go to bench/results/openvino_runtime-MODELS-DATE.json (`--json FILE`: there too), with a
flat table per model (`table`: every setting's bytes, latency per hint and ratios, as printed).
Targets: our W8A8 export <= 1.1x NNCF PTQ latency at the same bytes; our mixed ~4-bit A8 export
<= 0.15x FP32 bytes and <= 1.2x NNCF PTQ latency; embedded, equal bytes: our allocations'
Fréchet distance and alignment at least as good as NNCF's at 8 bits and better than its INT4
weight compression at ~4 bits.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import torch
from machine import cpu_summary, save, start

import mixdq
from mixdq.deploy import latency, load_deployed, module_bytes
from mixdq.deploy.openvino import BIN, MANIFEST, XML, OpenVINOUNet, export_openvino, file_hashes, record_unet_inputs
from mixdq.quant.quantize import needs_calibration

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "out" / "bench-openvino"
SETTINGS = ("pt-fp32", "pt-w8a8", "pt-mixed", "ov-fp32", "nncf-ptq", "nncf-int8-wc", "nncf-int4-wc",
            "mixdq-w8a8", "mixdq-mixed", "mixdq-w8a8-qk", "mixdq-mixed-qk", "mixdq-w8", "mixdq-w8-asym",
            "mixdq-mixed-w")
BASELINES = ("pt-fp32", "ov-fp32", "nncf-ptq")  # every run has them: the ratios' 1x (NNCF's PTQ reads ov-fp32)
WEIGHT_ONLY = ("mixdq-w8", "mixdq-w8-asym", "mixdq-mixed-w")  # embedded only: equals of NNCF's weight compression
HINTS = {"f32": "f32", "default": None}


# --- the two models: a float UNet, its calibration inputs, one call's inputs, its mixed allocation ---

class Embedded:
    name = "embedded"
    repeats = 30

    def __init__(self):
        from deploy import embedded_mixed

        self.pipe = mixdq.load_pipeline()
        self.pipe.set_progress_bar_config(disable=True)
        self.defaults = mixdq.generation_defaults()
        self.unet = self.pipe.unet
        self.mixed = embedded_mixed

    def calibration_inputs(self) -> list[dict[str, torch.Tensor]]:
        """The UNet's inputs while sampling the calibration captions, one item per sample."""
        calls = record_unet_inputs(self.pipe, lambda: mixdq.generate_images(
            self.pipe, list(self.defaults.prompts), **self.defaults.as_kwargs()))
        return [{k: v[i:i + 1] if v.dim() and v.shape[0] > 1 else v for k, v in call.items()}
                for call in calls for i in range(call["sample"].shape[0])]

    def call_inputs(self) -> dict[str, torch.Tensor]:
        return record_unet_inputs(self.pipe, lambda: self.pipe(
            "a red circle", generator=torch.Generator().manual_seed(0), **self.defaults.as_kwargs()))[0]

    def quantize(self, allocation: mixdq.Allocation, config: mixdq.QuantConfig | None = None) -> None:
        ranges = needs_calibration(allocation, config or mixdq.QuantConfig())
        calibration = self.defaults.calibration(batch_size=32) if ranges else None
        mixdq.quantize_(self.pipe, allocation, config, calibration=calibration)

    target = property(lambda self: self.pipe)  # what deploy / export take


class SDTurbo:
    name = "sd-turbo"
    repeats = 3

    def __init__(self):
        from deploy import sd_turbo_mixed
        from diffusers import UNet2DConditionModel

        config = mixdq.load_unet_config("sd-turbo")
        torch.manual_seed(0)
        self.unet = UNet2DConditionModel.from_config(config).eval()
        g = torch.Generator().manual_seed(0)
        self._inputs = [dict(sample=torch.randn(1, 4, 64, 64, generator=g), timestep=torch.tensor([999.0]),
                             encoder_hidden_states=torch.randn(1, 77, config["cross_attention_dim"], generator=g))
                        for _ in range(8)]
        self.mixed = lambda: sd_turbo_mixed(mixdq.build_inventory(self.unet).names)

    def calibration_inputs(self):
        return self._inputs

    def call_inputs(self):
        return self._inputs[0]

    def quantize(self, allocation: mixdq.Allocation, config: mixdq.QuantConfig | None = None) -> None:
        mixdq.prepare(self.unet, config)
        with mixdq.calibrating(self.unet), torch.no_grad():
            for x in self._inputs:
                self.unet(**x)
        mixdq.apply_allocation(self.unet, allocation)

    target = property(lambda self: self.unet)


MODELS = {"embedded": Embedded, "sd-turbo": SDTurbo}


def _allocation(model, setting: str) -> mixdq.Allocation:
    names = mixdq.build_inventory(model.unet).names
    allocation = model.mixed() if "mixed" in setting else mixdq.Allocation.uniform(names, 8, 8)
    return mixdq.Allocation(allocation.weights, {}) if setting in WEIGHT_ONLY else allocation


# --- prepare: one process per setting ---

def prepare(model_name: str, setting: str) -> None:
    out = WORK / model_name / setting
    model = MODELS[model_name]()
    bos = None if hasattr(model.target, "encode_prompt") else model.call_inputs()["encoder_hidden_states"][0, 0]
    if setting == "pt-fp32":
        return
    if setting in ("pt-w8a8", "pt-mixed"):
        from mixdq.deploy import deploy, save_deployed

        model.quantize(_allocation(model, setting))
        sample = None if hasattr(model.target, "encode_prompt") else (lambda: model.unet(**model.call_inputs()))
        deploy(model.target, bos=bos, sample=sample)
        save_deployed(model.target, out)
    elif setting == "ov-fp32":
        plain_conversion(model, out, bos)
    elif setting.startswith("mixdq-"):
        config = None
        if setting.endswith("-asym"):
            config = mixdq.QuantConfig(weight=mixdq.WeightQuantConfig(symmetric=False))
        elif setting.endswith("-qk"):
            config = mixdq.QuantConfig(self_attention_bits=8)
        model.quantize(_allocation(model, setting), config)
        export_openvino(model.target, out, inputs=model.call_inputs(), bos=bos, vae_decoder=False)  # UNets only
    else:
        nncf_compress(model, setting, out)


def plain_conversion(model, out: Path, bos: torch.Tensor | None) -> None:
    """OpenVINO FP32 as a user of OpenVINO and NNCF gets it: `ov.convert_model` of the float UNet,
    not our exporter (whose graph tricks, such as GEGLU's two halves, would speed up the peers
    too). Saved with the manifest our exporter writes for the same model, hashes renewed."""
    import openvino as ov

    from mixdq.deploy.openvino import _convert
    from mixdq.deploy.signature import UNetCall, timestep_vector

    mixdq.prepare(model.unet)  # every layer floating point: our exporter writes the manifest
    export_openvino(model.target, out, inputs=model.call_inputs(), bos=bos, vae_decoder=False)
    mixdq.restore(model.unet)
    inputs = dict(model.call_inputs())
    inputs["timestep"] = timestep_vector(inputs["timestep"])
    manifest = json.loads((out / MANIFEST).read_text())
    ir = _convert(UNetCall(model.unet, tuple(manifest["inputs"])), tuple(inputs[n] for n in manifest["inputs"]))
    for i, name in enumerate(manifest["inputs"]):
        ir.inputs[i].get_tensor().set_names({name})
    ov.save_model(ir, str(out / XML), compress_to_fp16=False)
    manifest.update(files=file_hashes(out), source="ov.convert_model of the float UNet")
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1))


def nncf_compress(model, setting: str, out: Path) -> None:
    """NNCF's own methods on the OpenVINO FP32 IR, default settings; written with a copy of its
    manifest (hashes renewed) so the same loader runs it."""
    import nncf
    import openvino as ov

    fp = WORK / model.name / "ov-fp32"
    ir = ov.Core().read_model(str(fp / XML))
    if setting == "nncf-ptq":
        items = [{k: v.numpy() for k, v in x.items()} for x in model.calibration_inputs()]
        compressed = nncf.quantize(ir, nncf.Dataset(items))
    elif setting == "nncf-int8-wc":
        compressed = nncf.compress_weights(ir)
    else:
        # ADJUST: where a layer's input channels are not a multiple of 128 (every layer of the
        # embedded model's 64-channel blocks), NNCF's own suggestion, a group size that divides them
        from nncf.quantization.advanced_parameters import AdvancedCompressionParameters

        adjust = AdvancedCompressionParameters(group_size_fallback_mode=nncf.GroupSizeFallbackMode.ADJUST)
        compressed = nncf.compress_weights(ir, mode=nncf.CompressWeightsMode.INT4_SYM, advanced_parameters=adjust)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    ov.save_model(compressed, str(out / XML), compress_to_fp16=False)
    manifest = json.loads((fp / MANIFEST).read_text())
    manifest.update(files=file_hashes(out), vae_decoder=False, source=f"{setting} of ov-fp32 (nncf {nncf.__version__})")
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1))


# --- measure: one process per setting and hint ---

def _runner(model, setting: str, hint: str | None):
    folder = WORK / model.name / setting
    if setting == "pt-fp32":
        return model.unet, module_bytes(model.unet)
    if setting.startswith("pt-"):
        unet = load_deployed(folder)
        return unet, (folder / "unet.safetensors").stat().st_size
    # ours as our loader runs them by default (exact); NNCF's models as the plugin runs them by
    # default (dynamic quantization of weight-compressed matmuls' float inputs on)
    unet = OpenVINOUNet(folder, precision=hint, threads=torch.get_num_threads(), exact=not setting.startswith("nncf"))
    return unet, (folder / XML).stat().st_size + (folder / BIN).stat().st_size


def measure(model_name: str, setting: str, hint: str | None) -> dict:
    model = MODELS[model_name]()
    unet, nbytes = _runner(model, setting, hint)
    x = model.call_inputs()
    with torch.no_grad():
        seconds = latency(lambda: unet(**x), repeats=model.repeats, warmup=1)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return dict(latency_s=seconds, bytes=nbytes, peak_rss_bytes=peak)


def images(setting: str, captions: int) -> None:
    """Held-out images of the embedded model under `setting` (f32 hint), saved for scoring."""
    from mixdq.embedded import dataset

    model = Embedded()
    if setting != "pt-fp32":
        unet, _ = _runner(model, setting, "f32")
        model.pipe.unet = unet
    imgs = mixdq.generate_images(model.pipe, dataset.evaluation_captions(captions), **model.defaults.as_kwargs())
    torch.save(imgs, WORK / "embedded" / f"images-{setting}.pt")


def fidelity(captions: int, settings: list[str]) -> dict[str, dict]:
    from mixdq.embedded import dataset
    from mixdq.embedded.classifier import AttributeClassifier, scores_against
    from mixdq.embedded.paths import EMBEDDED_CLASSIFIER_DIR

    clf = AttributeClassifier.load(EMBEDDED_CLASSIFIER_DIR)
    names = dataset.evaluation_captions(captions)
    load = lambda s: torch.load(WORK / "embedded" / f"images-{s}.pt", weights_only=True)  # noqa: E731  ours
    ref = load("pt-fp32")
    return {s: scores_against(clf, ref, load(s), names) for s in settings}


def vae_decode(model_name: str) -> dict:
    """Seconds per VAE decode of one image (the float decoder): PyTorch, and OpenVINO with each
    hint. SD-Turbo's VAE is SD's (the config below, random weights), at 512x512."""
    from diffusers import AutoencoderKL

    from mixdq.deploy.openvino import VAE_XML, OpenVINOVAE, _convert, _VAEDecode, compile_options

    if model_name == "embedded":
        vae, latents = Embedded().pipe.vae, torch.randn(1, 8, 16, 16)
    else:
        torch.manual_seed(0)
        vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                            up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2, latent_channels=4,
                            sample_size=512).eval()
        latents = torch.randn(1, 4, 64, 64)
    repeats = 10 if model_name == "embedded" else 2
    out = dict(pytorch=latency(lambda: vae.decode(latents), repeats=repeats, warmup=1))
    folder = WORK / model_name / "vae"
    folder.mkdir(parents=True, exist_ok=True)
    import openvino as ov

    ov.save_model(_convert(_VAEDecode(vae), (latents,)), str(folder / VAE_XML), compress_to_fp16=False)
    for hint, precision in HINTS.items():
        decoder = OpenVINOVAE(vae, folder, compile_options(precision, torch.get_num_threads()))
        out[f"openvino {hint}"] = latency(lambda: decoder.decode(latents), repeats=repeats, warmup=1)  # noqa: B023
    return out


# --- the parent: runs the children, prints the table ---

def _child(*args: str, threads: int) -> str:
    out = subprocess.run([sys.executable, __file__, "--threads", str(threads), *args], capture_output=True,
                         text=True, cwd=ROOT)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{out.stderr[-3000:]}")
    return out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""


def run_model(name: str, threads: int, captions: int, chosen: list[str], rounds: int) -> dict:
    settings = [s for s in SETTINGS if (name == "embedded" or s not in WEIGHT_ONLY) and s in chosen]
    for setting in settings:
        print(f"  preparing {setting} ...", flush=True)
        _child("--prepare", name, setting, threads=threads)
    runs: dict[str, dict[str, list[dict]]] = {s: {} for s in settings}
    for r in range(rounds):  # interleaved, so a slow spell of the machine hits every setting alike
        print(f"  measuring, round {r + 1} of {rounds} ...", flush=True)
        for setting in settings:
            for hint in (HINTS if setting.startswith(("ov", "nncf", "mixdq")) else {"-": None}):
                runs[setting].setdefault(hint, []).append(
                    json.loads(_child("--measure", name, setting, hint, threads=threads)))
    # each setting and hint: the round of median latency (of two, the faster), every round kept
    rows = {s: {h: dict(sorted(m, key=lambda x: x["latency_s"])[(len(m) - 1) // 2], rounds=m)
                for h, m in by_hint.items()} for s, by_hint in runs.items()}
    result = dict(settings=rows, vae_decode_s=json.loads(_child("--vae", name, threads=threads)))
    if name == "embedded" and captions:
        scored = [s for s in settings if not s.startswith("pt-")]
        for setting in ["pt-fp32", *scored]:
            _child("--images", setting, str(captions), threads=threads)
        result["fidelity"] = fidelity(captions, scored)
    return result


def print_model(name: str, r: dict, threads: int) -> None:
    fp = r["settings"]["pt-fp32"]["-"]
    nncf = r["settings"]["nncf-ptq"]
    print(f"\n{name} ({threads} threads; ratios against PyTorch FP32 in the same run; "
          "OV hint f32 | default)")
    print(f"{'setting':<15} {'MB on disk':>10} {'x FP32':>7} {'latency ms':>17} {'x FP32':>13} "
          f"{'x NNCF PTQ':>13} {'peak RSS MB':>15}")
    for setting, by_hint in r["settings"].items():
        m = list(by_hint.values())
        lat = " | ".join(f"{v['latency_s'] * 1e3:7.1f}" for v in m)
        xfp = " | ".join(f"{v['latency_s'] / fp['latency_s']:5.2f}" for v in m)
        xnn = " | ".join(f"{v['latency_s'] / n['latency_s']:5.2f}" for v, n in zip(m, nncf.values(), strict=False))
        rss = " | ".join(f"{v['peak_rss_bytes'] / 1e6:6.0f}" for v in m)
        print(f"{setting:<15} {m[0]['bytes'] / 1e6:10.1f} {m[0]['bytes'] / fp['bytes']:7.3f} {lat:>17} {xfp:>13} "
              f"{xnn:>13} {rss:>15}")
    v = r["vae_decode_s"]
    print("VAE decode of one image (float, not quantized): " + ", ".join(
        f"{k} {t * 1e3:,.1f} ms ({v['pytorch'] / t:.2f}x faster)" for k, t in v.items()))
    if "fidelity" in r:
        print(f"\nfidelity on held-out captions against PyTorch FP32's images (f32 hint)\n{'setting':<15} "
              f"{'alignment':>9} {'Frechet':>8} {'PSNR dB':>8}")
        for setting, s in r["fidelity"].items():
            print(f"{setting:<15} {s['alignment']:9.3f} {s['frechet']:8.3f} {s['psnr']:8.2f}")


def table(r: dict) -> list[dict]:
    """The printed table as data: per setting, bytes, latency per hint, and the ratios against
    PyTorch FP32 and NNCF's PTQ of the same run ("-": PyTorch, which has no hint)."""
    fp, nncf = r["settings"]["pt-fp32"]["-"], r["settings"]["nncf-ptq"]
    rows = []
    for setting, by_hint in r["settings"].items():
        first = next(iter(by_hint.values()))
        row = dict(setting=setting, bytes=first["bytes"], bytes_x_fp32=first["bytes"] / fp["bytes"],
                   peak_rss_bytes=first["peak_rss_bytes"])
        for hint, m in by_hint.items():
            key = "f32" if hint == "-" else hint
            row[f"latency_{key}_s"] = m["latency_s"]
            row[f"x_fp32_{key}"] = m["latency_s"] / fp["latency_s"]
            if hint in nncf:
                row[f"x_nncf_{key}"] = m["latency_s"] / nncf[hint]["latency_s"]
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="embedded,sd-turbo")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--captions", type=int, default=128, help="held-out captions for fidelity (0: none)")
    parser.add_argument("--settings", default=",".join(SETTINGS),
                        help=f"which settings (comma-separated; {', '.join(BASELINES)} always run)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure every setting this many times, interleaved; report the median")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--prepare", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--measure", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--images", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--vae", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with torch.no_grad():
        if args.prepare:
            return prepare(*args.prepare)
        if args.measure:
            name, setting, hint = args.measure
            return print(json.dumps(measure(name, setting, HINTS.get(hint))))
        if args.vae:
            return print(json.dumps(vae_decode(args.vae)))
        if args.images:
            return images(args.images[0], int(args.images[1]))
    chosen = args.settings.split(",")
    unknown = set(chosen) - set(SETTINGS)
    if unknown:
        parser.error(f"unknown settings {sorted(unknown)}; choose from {', '.join(SETTINGS)}")
    chosen = [*BASELINES, *chosen]
    start(args.threads)
    everything = dict(cpu=cpu_summary(args.threads), models={})
    for name in args.models.split(","):
        print(f"{name}:", flush=True)
        everything["models"][name] = r = run_model(name, args.threads, args.captions, chosen, args.rounds)
        print_model(name, r, args.threads)
    if args.json:
        Path(args.json).write_text(json.dumps(everything, indent=1) + "\n")
        print(f"\nwrote {args.json}")
    for r in everything["models"].values():
        r["table"] = table(r)
    save("openvino_runtime", dict(models=everything["models"], settings=chosen, rounds=args.rounds,
                                  captions=args.captions), tag="-".join(args.models.split(",")))


if __name__ == "__main__":
    main()

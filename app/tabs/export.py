"""The export view: take the allocation, the profile and a deployed model home."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from .. import downloads, exports, views
from .budget import BudgetTab
from .common import Shared, friendly

INTRO = (
    "Take the budget view's allocation home: as JSON (what `mixdq deploy --allocation` and "
    "`mixdq.Allocation.load` read) and as MixDQ's YAML files, with the profile it came from as CSV. "
    "For the embedded model, two runnable forms, sizes measured, not computed: the deployed PyTorch "
    "checkpoint (weights really packed to their bits, each layer on the fastest of its kernels, int8 or "
    "float, measured) and an OpenVINO IR (each layer's weights stored at its bits, activations quantized where "
    "the allocation says, with the calibrated ranges, on OpenVINO's int8 CPU kernels)."
)


@dataclass(frozen=True, eq=False)
class ExportTab:
    """The export view's components (nothing of it is wired from elsewhere)."""

    files_button: gr.Button
    deployed_button: gr.Button
    openvino_button: gr.Button
    self_attention: gr.Checkbox
    status: gr.Markdown
    files: gr.File


def build(shared: Shared, budget: BudgetTab) -> ExportTab:
    with gr.Tab("Export", id="export"):
        gr.Markdown(INTRO)
        with gr.Row():
            files_btn = gr.Button("Allocation and profile files", elem_id="export-files")
            deploy_btn = gr.Button("Deployed checkpoint (zip)", elem_id="export-deployed")
            openvino_btn = gr.Button("OpenVINO IR (zip)", elem_id="export-openvino")
        self_attention = gr.Checkbox(
            False, label="OpenVINO IR: also put self-attention's query and key on 8 bits",
            elem_id="export-self-attention",
            info="Beyond MixDQ (Intel's NNCF quantizer does it): the attention that compares every image patch with "
            "every other then runs on integer kernels. Measured on the full-size SD-Turbo UNet: 15 % faster on "
            "OpenVINO's CPU runtime (1,022 -> 869 ms per call). On this tiny model it gains no speed and barely moves "
            "the images (distance to the float images 0.18 -> 0.20).")
        status = gr.Markdown(elem_id="export-status")
        files = gr.File(label="Downloads", file_count="multiple", interactive=False, elem_id="export-downloads")

    def plan_of(values):
        model, mb, controls = budget.plan(values)
        entry = shared.entry(model)
        return entry, views.solve(entry, controls, mb)

    def allocation_files(values):
        entry, plan = plan_of(values)
        paths = downloads.allocation_files(entry, plan)
        return [str(p) for p in paths], (f"{plan.avg_bits:.2f} bits, {views.megabytes(plan.weight_mb)} MB "
                                         f"predicted for the packed weights; files: {', '.join(p.name for p in paths)}")

    def exporter(kind: str, what: str, describe):
        """A click handler: the budget view's plan, made runnable as `kind` (when the studio has
        the model's weights; else the commands that do it elsewhere), and `describe`d."""

        def run(values, progress=gr.Progress()):  # the inputs are a set: one dict of values, then the progress
            entry, plan = plan_of(values)
            if (refused := entry.images_refused()) is not None:
                return gr.skip(), (f"{refused}\n\nOn a machine that has its weights, the command line does the "
                                   "same:\n\n" + downloads.commands(entry, plan.avg_bits))
            progress(0.1, desc=what)
            result = entry.export(kind, plan.allocation, 8 if kind == "openvino" and values[self_attention] else None)
            return [result["archive"]], describe(plan, result)

        return run

    def deployed_text(plan, result):
        zipped, weights, kernels = result["zip_bytes"], result["weights_bytes"], result["kernels"]
        return (f"Deployed UNet: **{weights / 1e6:,.2f} MB** of weights on disk ({zipped / 1e6:,.2f} MB zipped); "
                f"the planner predicted {plan.weight_mb:,.2f} MB packed. How its layers compute, whichever was "
                f"fastest for each here: {exports.describe_kernels(kernels)} (`mixdq report FOLDER` lists every "
                "layer). Load it with `mixdq.deploy.load_deployed_pipeline(folder)`.")

    def openvino_text(plan, result):
        zipped, ir_bytes, stored = result["zip_bytes"], result["files"], result["stored"]
        self_attention = result["self_attention_bits"]
        acts = ("activations quantized with the calibrated ranges" if plan.allocation.acts
                else "activations in floating point (weight-only)")
        if self_attention:
            acts += ", and self-attention's query and key on 8 bits"
        unet = ir_bytes["unet.bin"] + ir_bytes["unet.xml"]
        vae = sum(ir_bytes.values()) - unet
        return (f"OpenVINO IR of the UNet: **{unet / 1e6:,.2f} MB** on disk: {ir_bytes['unet.bin'] / 1e6:,.2f} MB "
                f"of constants (the planner predicted {plan.weight_mb:,.2f} MB for the packed weights; the rest is "
                f"scales, biases and norms) and {ir_bytes['unet.xml'] / 1e6:,.2f} MB of graph description; {acts}. "
                f"Weights stored as {exports.describe_storage(stored)}. The folder also holds the VAE decoder "
                f"(float, {vae / 1e6:,.2f} MB); zipped, {zipped / 1e6:,.2f} MB. Load it with "
                "`mixdq.deploy.load_openvino_pipeline(folder)`; needs `pip install 'mixdq-studio[openvino]'`.")

    deployed = exporter("deployed", "packing the weights", deployed_text)
    openvino = exporter("openvino", "converting for OpenVINO", openvino_text)

    inputs = budget.inputs(self_attention)
    files_btn.click(friendly(allocation_files), budget.inputs(), [files, status], api_visibility="private")
    deploy_btn.click(friendly(deployed), inputs, [files, status], concurrency_id="pipeline", concurrency_limit=1,
                     api_visibility="private")
    openvino_btn.click(friendly(openvino), inputs, [files, status], concurrency_id="pipeline", concurrency_limit=1,
                       api_visibility="private")
    return ExportTab(files_btn, deploy_btn, openvino_btn, self_attention, status, files)

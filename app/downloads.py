"""What a user takes home besides a model: the allocation (JSON, MixDQ's YAML), the profile (CSV),
and the command lines that do the same where the model's weights are not here."""

from __future__ import annotations

import json
from pathlib import Path

import mixdq
from mixdq.core.serialization import atomic_write_text

from .exports import temp_folder
from .registry import ModelEntry


def allocation_files(entry: ModelEntry, plan: mixdq.Plan) -> list[Path]:
    """allocation.json (every layer listed, "fp" included), MixDQ's two YAML files, profile.csv."""
    out = temp_folder()
    alloc = out / "allocation.json"
    atomic_write_text(alloc, json.dumps(plan.allocation.to_dict(plan.layers), indent=1) + "\n")
    files = [alloc]
    for kind, bits in (("weight", plan.allocation.weights), ("act", plan.allocation.acts)):
        if bits:
            path = out / f"mixdq_{kind}_bits.yaml"
            path.write_text(plan.allocation.to_mixdq_yaml("weight" if kind == "weight" else "activation"))
            files.append(path)
    profile_csv = out / f"profile-{entry.key.replace('/', '_')}.csv"
    entry.profile.to_dataframe().to_csv(profile_csv, index=False)
    return [*files, profile_csv]


def commands(entry: ModelEntry, avg_bits: float) -> str:
    """For a model whose weights are not here: the command lines that do the same."""
    name = entry.key.replace("/", "_")
    return (f"```bash\nmixdq allocate --profile {entry.profile_path.name} --avg-bits {avg_bits:.2f} -o alloc.json\n"
            f"mixdq deploy {entry.spec} --allocation alloc.json -o {name}-deployed\n"
            f"mixdq export-openvino {entry.spec} --allocation alloc.json -o {name}-openvino\n```")

"""MixDQ Studio: a thin Gradio layer over the `mixdq` engine.

The studio calls the engine through its public API: `mixdq` (the names in `mixdq/__init__.py`)
and `mixdq.deploy` (`mixdq/deploy/__init__.py`). Beyond those it may import these engine
modules only, each for what the public API does not carry:

- `mixdq.core.bits`: bit-width choices, parsing and formatting (`bits_choices`, `parse_bits`,
  `format_bits`, `KINDS`)
- `mixdq.core.device`: byte counts as text, and freed memory given back (`format_gb`,
  `release_freed_memory`)
- `mixdq.core.metrics`: PSNR and SSIM of images, SQNR of UNet outputs (`psnr_db`, `ssim`, `sqnr_db`,
  `SQNR_CAP_DB`)
- `mixdq.core.serialization`: files written atomically (`atomic_write_text`)
- `mixdq.models.inventory`: where a layer sits in the UNet, for the layer maps (`Position`, `position`), and
  its groups (`GROUPS`)
- `mixdq.planning.damage`: a score as damage, and the metrics' agreement (`damage`, `metric_agreement`)
- `mixdq.sensitivity.journal`: a sweep's journal, to say how much a resumed sweep kept (`journal_path`)
- `mixdq.embedded`: the embedded model's data set, captions and prompts (`dataset`)
- `mixdq.embedded.classifier`: its attribute classifier (`AttributeClassifier`, `alignment`,
  `scores_against`)
- `mixdq.core.assets`: where the shipped files are (`ASSETS`: profiles, MixDQ's measurements)
- `mixdq.embedded.paths`: the embedded model's classifier (`EMBEDDED_CLASSIFIER_DIR`)

`tests/studio/test_app.py` checks that app/ keeps to this list; a new entry needs its reason here.
"""

"""The studio as its host runs it: which models make images (configuration, not code), Space mode
(full-size sweeps off unless the owner allows them; no full-size images without a GPU), and work
that memory cannot hold refused with what it needs, losing nothing already computed."""

import re

import pytest

import mixdq
from app import api, gpu, images, library, pipelines, settings
from app.pipelines import Job
from app.registry import ModelEntry, default_models
from app.startup import load_served, served

from tiny_models import tiny_sd

PROMPT = "a large red circle on the left, white background"


@pytest.fixture
def studio(monkeypatch):
    """The environment of a local run (no Space), and the settings read from it."""
    for name in ("SPACE_ID", "SPACES_ZERO_GPU", settings.MODELS_ENV, settings.SWEEPS_ENV, "MIXDQ_DEVICE"):
        monkeypatch.delenv(name, raising=False)

    def configure(**env):
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        return settings.use(settings.StudioSettings.from_env())

    pipelines.refused.clear()
    yield configure
    pipelines.refused.clear()
    settings.use(settings.StudioSettings.from_env())


def test_models_that_make_images_come_from_the_environment(studio):
    assert studio().models == ("embedded",)
    assert studio(MIXDQ_STUDIO_MODELS=" embedded, sdxl-turbo,embedded ").models == ("embedded", "sdxl-turbo")
    assert [e.key for e in served(default_models(), settings.current())] == ["embedded", "sdxl-turbo"]


def test_a_model_without_a_profile_is_refused_at_start_up_saying_how(studio):
    studio(MIXDQ_STUDIO_MODELS="embedded,sd-turbo")
    with pytest.raises(mixdq.ConfigError, match="MIXDQ_STUDIO_MODELS names 'sd-turbo'.*--profile"):
        served(default_models(), settings.current())


def test_a_16_gb_machine_serves_what_fits_and_the_rest_from_its_profile_saying_why(studio, monkeypatch, tmp_path):
    tiny_sd().save_pretrained(tmp_path / "tiny")
    folder = str(tmp_path / "tiny")
    studio(SPACE_ID="someone/mixdq", MIXDQ_STUDIO_MODELS=f"embedded,sdxl-turbo,{folder}", MIXDQ_DEVICE="cpu")
    monkeypatch.setattr(mixdq, "available_bytes", lambda device="cpu": 16 * 10**9)  # CPU basic
    models = default_models()
    models[folder] = ModelEntry(folder, folder, models["embedded"].profile_path)
    assert load_served(models, settings.current()) == ["embedded", folder]
    assert "sdxl-turbo" not in gpu.PIPELINES
    refused = models["sdxl-turbo"].images_refused()
    assert re.search(r"needs about 2\d\.\d+ GB .* 16.00 GB free: it is served from its profile only", refused)
    with pytest.raises(mixdq.ModelNotFoundError, match="profile only"):
        models["sdxl-turbo"].images([Job((PROMPT,), 0)])


def test_a_model_whose_weights_cannot_be_had_leaves_the_studio_serving_and_says_how(studio, monkeypatch):
    studio(MIXDQ_STUDIO_MODELS="embedded,sdxl-turbo", MIXDQ_DEVICE="cpu")  # tests run offline
    monkeypatch.setattr(mixdq, "available_bytes", lambda device="cpu": 10**12)
    models = default_models()
    assert load_served(models, settings.current()) == ["embedded"]
    assert re.search(r"could not be loaded at start-up: .*hf download stabilityai/sdxl-turbo",
                     models["sdxl-turbo"].images_refused())


def test_off_a_space_a_model_not_loaded_at_start_up_says_how_to_serve_it(studio):
    studio()
    assert "python app.py --model sdxl-turbo" in default_models()["sdxl-turbo"].images_refused()
    assert default_models()["embedded"].images_refused() is None  # loads on first use, in a second


def test_full_size_sweeps_are_off_on_a_space_unless_its_owner_allows_them(studio):
    models = default_models()
    studio(SPACE_ID="someone/mixdq")
    with pytest.raises(mixdq.ConfigError, match="MIXDQ_STUDIO_SWEEPS=1"):
        library.check_sweep(models["sdxl-turbo"])
    library.check_sweep(models["embedded"])  # minutes on a CPU: always allowed
    studio(SPACE_ID="someone/mixdq", MIXDQ_STUDIO_SWEEPS="1")
    assert settings.current().sweeps


def test_work_memory_cannot_hold_is_refused_saying_what_it_needs_and_nothing_is_lost(studio, monkeypatch):
    studio()
    models = default_models()
    entry = models["embedded"]
    fp, q, before = images.compare(entry, [PROMPT], 0, mixdq.Allocation.uniform(entry.profile.names, 4, 8))
    monkeypatch.setattr(mixdq, "available_bytes", lambda device="cpu": 1_000_000)  # a machine with 1 MB free
    with pytest.raises(mixdq.InsufficientMemoryError, match=r"needs about .* MB more on cpu, and 1.0 MB are free"):
        api.export_deployed(models, 4.0)
    with pytest.raises(mixdq.InsufficientMemoryError, match="loads a second copy of the model.*mixdq sensitivity"):
        library.check_sweep(entry)
    # what was computed before is still there: the FP image comes from the cache, the pipeline still works
    again, q2, after = images.compare(entry, [PROMPT], 0, mixdq.Allocation.uniform(entry.profile.names, 4, 8))
    assert again is fp and after == before


def test_a_bad_allocation_is_a_message_and_leaves_the_cache_and_pipeline_as_they_were(studio):
    studio()
    entry = default_models()["embedded"]
    fp = entry.images([Job((PROMPT,), 3)])[0]
    with pytest.raises(mixdq.UnknownLayerError, match="no.such.layer"):
        entry.images([Job((PROMPT,), 3), Job((PROMPT,), 3, mixdq.Allocation({"no.such.layer": 4}))])
    assert entry.images([Job((PROMPT,), 3)])[0] is fp

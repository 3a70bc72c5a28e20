"""The embedded model deployed under a mixed allocation, shared by the deploy tests that need a
real pipeline (built once for the package: deploying it takes a while)."""

import pytest

import mixdq
from mixdq.deploy import deploy
from mixdq.embedded import dataset

CAPTIONS = dataset.evaluation_captions(4)
CALIBRATION = mixdq.CalibrationConfig(prompts=dataset.calibration_captions(8), num_inference_steps=4, batch_size=8)


@pytest.fixture(scope="package")
def simulated_and_deployed():
    """The embedded model under a mixed allocation (int8 kernels, packed 2-6 bits, float layers),
    its simulated images, and the same pipeline deployed."""
    pipe = mixdq.load_pipeline()
    pipe.set_progress_bar_config(disable=True)
    names = mixdq.load_inventory(None).names
    bits = [8, 4, 3, 2, 6, 5, None, 8]
    allocation = mixdq.Allocation({n: bits[i % len(bits)] for i, n in enumerate(names)},
                                  {n: 8 if i % 5 else 6 for i, n in enumerate(names)})
    mixdq.quantize_(pipe, allocation, calibration=CALIBRATION)
    simulated = mixdq.generate_images(pipe, CAPTIONS, **mixdq.generation_defaults().as_kwargs())
    deploy(pipe)
    return pipe, allocation, simulated

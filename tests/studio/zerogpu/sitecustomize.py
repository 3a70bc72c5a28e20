"""Lets the real `spaces` package (0.51.3, the test extra) run its ZeroGPU mode on a CPU-only torch.

tests/studio/test_zerogpu.py puts this folder on the PYTHONPATH of the studio it starts (Python imports
`sitecustomize` at start-up); it is never installed, and it does nothing unless SPACES_ZERO_GPU
is set. Everything the ZeroGPU contract is made of stays the package's own: `spaces.GPU`, the
forked worker per call, arguments and results pickled through its queues
(`spaces/zero/wrappers.py`), and its client talking to a device API (the test's stand-in on
127.0.0.1). What a CPU torch lacks is shimmed, each line naming what needs it:

- `spaces/zero/torch/static.py:31` reads `torch.version.cuda.startswith(...)` at import: None on
  a CPU build, so it is given a CUDA 12 version string.
- `spaces/zero/torch/patching.py:56` saves `torch._C._cuda_init` (absent on a CPU build) to restore
  it in the worker.
- `patching.py:453` (`is_in_bad_fork`, run by `spaces/zero/__init__.py:23` at import) sends
  `torch.cuda._is_in_bad_fork` to a forked pool: a lambda on a CPU build, which does not pickle.
- In the worker (`wrappers.py:147-154`) `torch.init` calls `torch.Tensor([0]).cuda()`
  (`patching.py:415-417`) and `torch.move` copies every tensor put on the emulated `cuda` device
  to the real one and synchronizes (`patching.py:422-451`): a CPU build has no device to copy to.
  So the studio runs on the CPU (MIXDQ_DEVICE=cpu), nothing is aliased to the emulated device,
  and `move` checks exactly that.
"""

import os

if (os.environ.get("SPACES_ZERO_GPU") or "").lower() in ("1", "t", "true"):
    import torch

    def _no_cuda_init() -> None:
        raise RuntimeError("a CPU-only torch has no CUDA to initialise")

    if torch.version.cuda is None:
        torch.version.cuda = "12.8"
        torch._C._cuda_init = _no_cuda_init
        # `bool() is False`, and a builtin pickles by name (a function of this module would not: the
        # fork pool's feeder thread would wait for this module's import, which waits for the pool)
        torch.cuda._is_in_bad_fork = bool

        import spaces.zero.torch as _zero_torch
        from spaces.zero.torch import patching as _patching

        def _init(nvidia_uuid: str) -> None:
            os.environ["CUDA_VISIBLE_DEVICES"] = nvidia_uuid  # what patching.init does before `.cuda()`

        def _move(callback=None) -> None:
            moved = [t for t in _patching.cuda_aliases.values() if t is not None]
            if moved or _patching.tensor_packs:
                raise RuntimeError("tensors were put on ZeroGPU's emulated cuda device: this CPU test harness "
                                   "cannot move them to a GPU (run the studio with MIXDQ_DEVICE=cpu)")

        _zero_torch.init = _init
        _zero_torch.move = _move

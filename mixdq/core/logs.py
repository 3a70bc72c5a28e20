"""Third-party log lines a user cannot act on, dropped at the logger that emits them.

Only exact messages are dropped, and the prompt-length ones only inside our own calls (where
`prompts.warn_about_prompts` says the same thing once, in words that apply to the model): a
plain `pipe(...)` outside mixdq still gets diffusers' truncation warning (transformers gives its
"sequence length" warning once per tokenizer, so one dropped inside our calls is not repeated).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager


class _Drop(logging.Filter):
    def __init__(self, *starts: str):
        super().__init__()
        self.starts = starts

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.starts)


def silence_import_noise() -> None:
    """transformers announces, on first access, that its image processors fall back to PIL
    without torchvision; our pipelines never process images with them."""
    logger = logging.getLogger("transformers.utils.import_utils")
    if not any(isinstance(f, _Drop) for f in logger.filters):
        logger.addFilter(_Drop(*(f"`{name}ImageProcessor` requires torchvision" for name in ("CLIP", "Siglip"))))


@contextmanager
def _filtered(logger: logging.Logger, drop: _Drop) -> Iterator[None]:
    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)


@contextmanager
def quiet_prompt_noise(pipe) -> Iterator[None]:
    """Within the block, drop the tokenizer's "Token indices sequence length is longer ..." and
    the pipeline's "The following part of your input was truncated ..." (which also fires for a
    batch of prompts of unequal length and then lists padding tokens)."""
    with ExitStack() as stack:
        stack.enter_context(_filtered(logging.getLogger("transformers.tokenization_utils_base"),
                                      _Drop("Token indices sequence length is longer")))
        stack.enter_context(_filtered(logging.getLogger(type(pipe).__module__),
                                      _Drop("The following part of your input was truncated")))
        yield

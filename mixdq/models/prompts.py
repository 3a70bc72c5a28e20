"""What a model can read of a prompt: the words it knows, and how many tokens it takes.

The embedded model was trained on captions built from a few dozen words; any other word reaches
it as single letters it never saw, and a prompt longer than its 16-token text window is cut off.
Full-size models read any English text through CLIP's open BPE vocabulary, but still only 77
tokens of it.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from functools import lru_cache

from transformers import CLIPTokenizer

from mixdq.embedded.paths import EMBEDDED_DIR

OPEN_VOCABULARY = 10_000  # a tokenizer this large reads any word (CLIP's has 49,408 tokens)
_WORD = re.compile(r"[a-z]+")


class PromptWarning(UserWarning):
    """A prompt has words the model does not know, or more tokens than it reads."""


@lru_cache(maxsize=8)
def _vocabulary(tokenizer) -> frozenset[str] | None:
    if len(tokenizer) >= OPEN_VOCABULARY:
        return None
    # whole-word tokens end in "</w>"; single letters are bytes every byte-level BPE has, so
    # they say nothing, and a tokenizer without any longer word reads text letter by letter
    words = (t.removesuffix("</w>") for t in tokenizer.get_vocab() if t.endswith("</w>"))
    return frozenset(w for w in words if len(w) > 1 and w.isalpha()) or None


def _tokenizer(model):
    return _embedded_tokenizer() if model is None else getattr(model, "tokenizer", model)


@lru_cache(maxsize=1)
def _embedded_tokenizer():
    return CLIPTokenizer.from_pretrained(EMBEDDED_DIR / "tokenizer")


def known_words(model=None) -> frozenset[str] | None:
    """The words (of two letters or more) a model's text encoder was trained on as whole words:
    for the embedded model (`model` None, or its pipeline) its caption vocabulary; None for an
    open vocabulary. `model` is a pipeline or a tokenizer."""
    return _vocabulary(_tokenizer(model))


@dataclass(frozen=True)
class PromptCheck:
    prompt: str
    tokens: int  # text tokens, BOS and EOS not counted
    max_tokens: int  # how many the text encoder reads
    unknown_words: tuple[str, ...]

    @property
    def truncated(self) -> bool:
        return self.tokens > self.max_tokens

    @property
    def message(self) -> str | None:
        """One sentence on what the model will not see, or None when it sees all of it."""
        parts = []
        if self.unknown_words:
            words = ", ".join(f"'{w}'" for w in self.unknown_words)
            parts.append(f"the model was never trained on {words} (mixdq.known_words() lists the words it knows)")
        if self.truncated:
            parts.append(f"it is {self.tokens} tokens long and the model reads {self.max_tokens}, "
                         "so the rest is cut off")
        return f"prompt '{self.prompt}': {'; '.join(parts)}" if parts else None


def check_prompt(model, prompt: str) -> PromptCheck:
    """What `model` (a pipeline or a tokenizer; None: the embedded model) can read of `prompt`."""
    tokenizer = _tokenizer(model)
    vocabulary = _vocabulary(tokenizer)
    unknown = () if vocabulary is None else tuple(dict.fromkeys(
        w for w in _WORD.findall(prompt.lower()) if len(w) > 1 and w not in vocabulary))
    ids = tokenizer(prompt, add_special_tokens=False, truncation=False, verbose=False).input_ids
    return PromptCheck(prompt, len(ids), tokenizer.model_max_length - 2, unknown)


def warn_about_prompts(model, prompts) -> None:
    """One `PromptWarning` per distinct prompt that the model cannot read in full."""
    for prompt in dict.fromkeys(prompts):
        message = check_prompt(model, prompt).message
        if message:
            warnings.warn(message, PromptWarning, stacklevel=3)

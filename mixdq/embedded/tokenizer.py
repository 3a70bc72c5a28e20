"""A real `CLIPTokenizer` (byte-level BPE) whose vocabulary is the data set's words.

Every byte is a token, so any text tokenizes; each caption word is one token, built by BPE merges
ranked so that no word's merges break another's.
"""

from __future__ import annotations

import re

from tokenizers.pre_tokenizers import ByteLevel
from transformers import CLIPTokenizer

from mixdq.embedded.components import MAX_TOKENS
from mixdq.embedded.dataset import all_scenes

BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def caption_words() -> list[str]:
    words = set()
    for scene in all_scenes():
        words.update(re.findall(r"[a-z]+|[^\sa-z]", scene.caption))
    return sorted(words)


def build_tokenizer() -> CLIPTokenizer:
    chars = sorted(ByteLevel.alphabet())
    vocab = [BOS, EOS] + chars + [c + "</w>" for c in chars]
    merges: list[tuple[str, str]] = []
    # Longest words first: a shorter word's merges then never pre-empt a longer word's prefix.
    for word in sorted(caption_words(), key=lambda w: (-len(w), w)):
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        while len(pieces) > 1:
            pair = (pieces[0], pieces[1])
            if pair not in merges:
                merges.append(pair)
            pieces = [pieces[0] + pieces[1]] + pieces[2:]
            if pieces[0] not in vocab:
                vocab.append(pieces[0])
    return CLIPTokenizer(
        vocab={t: i for i, t in enumerate(vocab)}, merges=merges, model_max_length=MAX_TOKENS,
        bos_token=BOS, eos_token=EOS, pad_token=EOS, unk_token=EOS,
    )

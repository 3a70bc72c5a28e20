"""Derive CLIP's byte-level BPE tokenizer files (vocab.json, merges.txt) from open_clip's wheel.

The BPE table of OpenAI CLIP (MIT), which OpenCLIP (MIT) ships unchanged as
`open_clip/bpe_simple_vocab_16e6.txt.gz`, is the tokenizer of every SD/SDXL text encoder.
Run once, where PyPI can be reached (open_clip is not a dependency of this project):

    pip download --no-deps open-clip-torch==3.3.0 -d /tmp/oc
    python assets/architectures/clip-tokenizer/make.py /tmp/oc/open_clip_torch-3.3.0-py3-none-any.whl

`--check` then also tokenizes a few prompts with open_clip's own `SimpleTokenizer` (taken from the
same wheel; it needs `ftfy`, `regex` and `torch` importable) and with a transformers
`CLIPTokenizer` over the files written here, asserts the ids agree and prints them.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import sys
import tempfile
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
BPE = "open_clip/bpe_simple_vocab_16e6.txt.gz"
# the prompts tests/test_fullsize.py hard-codes the ids of
PROMPTS = (
    "a photo of a cat",
    "A cinematic shot of a baby racoon wearing an intricate italian priest robe.",
    "Astronaut in a jungle, cold color palette, muted colors, detailed, 8k",
)


def bytes_to_unicode() -> dict[int, str]:
    """CLIP's reversible map of the 256 byte values to printable characters (as in open_clip)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def derive(bpe_lines: list[str]) -> tuple[dict[str, int], list[str]]:
    """The 49,408-token vocabulary and the 48,894 merges, exactly as `SimpleTokenizer` builds them."""
    merges = bpe_lines[1 : 49152 - 256 - 2 + 1]
    chars = list(bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars] + ["".join(m.split()) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {t: i for i, t in enumerate(tokens)}
    assert len(vocab) == len(tokens) == 49408, len(vocab)
    return vocab, merges


def write(wheel: Path, out: Path = HERE) -> None:
    with zipfile.ZipFile(wheel) as z:
        lines = gzip.decompress(z.read(BPE)).decode("utf-8").split("\n")
    vocab, merges = derive(lines)
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    print(f"wrote {len(vocab)} tokens and {len(merges)} merges to {out}")


def check(wheel: Path, out: Path = HERE) -> None:
    from transformers import CLIPTokenizer

    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(wheel) as z:
        z.extract("open_clip/tokenizer.py", tmp)
        z.extract(BPE, tmp)
        spec = importlib.util.spec_from_file_location("oc_tokenizer", Path(tmp, "open_clip/tokenizer.py"))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        reference = module.SimpleTokenizer()
    ours = CLIPTokenizer.from_pretrained(out)
    for prompt in PROMPTS:
        want = [reference.sot_token_id, *reference.encode(prompt), reference.eot_token_id]
        have = ours(prompt).input_ids
        assert have == want, (prompt, have, want)
        print(f"{prompt!r}: {have}")
    print("open_clip's SimpleTokenizer and CLIPTokenizer agree")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("wheel", type=Path, help="open_clip_torch-3.3.0-py3-none-any.whl")
    parser.add_argument("--check", action="store_true", help="compare token ids with open_clip's tokenizer")
    args = parser.parse_args()
    write(args.wheel)
    if args.check:
        check(args.wheel)
    sys.exit(0)

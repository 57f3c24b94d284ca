"""Runtime draft-vocabulary API: map loading and its errors, language detection, the pruned head."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from safetensors.torch import save_file

from tests.fixtures.tiny_checkpoint import build_byte_tokenizer
from vllm_fastmtp.draft_vocab import DraftVocabConfig, PrunedDraftHead
from vocab_maps.format import VocabMapError, load_vocab_map, resolve_map_path, tokenizer_fingerprint
from vocab_maps.language import CJK, NEUTRAL, OTHER, LanguageDetector, classify_token_bytes


@pytest.fixture(scope="module")
def byte_tok(tmp_path_factory):
    from transformers import AutoTokenizer

    d = tmp_path_factory.mktemp("bytetok")
    build_byte_tokenizer(d, 384)
    return AutoTokenizer.from_pretrained(str(d))


# ---------------------------------------------------------------- loading


def _save_map(path, ids, meta=None):
    torch.save(ids, str(path))
    if meta is not None:
        path.with_suffix(".json").write_text(json.dumps(meta))
    return path


def test_load_list_format_keeps_order(tmp_path):
    p = _save_map(tmp_path / "m.pt", [5, 3, 9, 0])
    ids = load_vocab_map(p, vocab_size=10)
    assert ids.dtype == torch.long and ids.tolist() == [5, 3, 9, 0]


def test_load_d2t_pt_and_safetensors(tmp_path):
    target = torch.tensor([0, 2, 3, 7, 11])  # ascending draft ids 0..4 -> these targets
    d2t = target - torch.arange(5)
    torch.save({"d2t": d2t, "t2d": torch.zeros(12, dtype=torch.bool)}, str(tmp_path / "a.pt"))
    save_file({"d2t": d2t}, str(tmp_path / "b.safetensors"))
    assert load_vocab_map(tmp_path / "a.pt", vocab_size=12).tolist() == target.tolist()
    assert load_vocab_map(tmp_path / "b.safetensors", vocab_size=12).tolist() == target.tolist()


@pytest.mark.parametrize(
    "ids, match",
    [
        ([1, 2, 10], r"token id 10 >= vocab_size 10"),
        ([1, -1, 2], r"negative token id -1"),
        ([1, 2, 2, 3], r"1 duplicate ids \(e.g. \[2\]\)"),
        ([], r"the map is empty"),
        ([1, "a"], r"integer token ids"),
    ],
)
def test_bad_ids_are_named_errors(tmp_path, ids, match):
    p = _save_map(tmp_path / "bad.pt", ids)
    with pytest.raises(VocabMapError, match=match) as e:
        load_vocab_map(p, vocab_size=10)
    assert "bad.pt" in str(e.value)


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickled_objects_refused(tmp_path, capsys):
    p = tmp_path / "evil.pt"
    with open(p, "wb") as f:
        pickle.dump([1, 2, Evil()], f)
    with pytest.raises(VocabMapError, match=r"evil.pt: refused to load"):
        load_vocab_map(p, vocab_size=10)
    assert "pwned" not in capsys.readouterr().out


def test_unreadable_file(tmp_path):
    p = tmp_path / "junk.pt"
    p.write_bytes(b"not a torch file at all")
    with pytest.raises(VocabMapError, match="junk.pt"):
        load_vocab_map(p, vocab_size=10)
    q = tmp_path / "junk.safetensors"
    q.write_bytes(b"\x00" * 20)
    with pytest.raises(VocabMapError, match="junk.safetensors: unreadable safetensors"):
        load_vocab_map(q, vocab_size=10)


def test_sidecar_checks(tmp_path, byte_tok):
    fp = tokenizer_fingerprint(byte_tok)
    meta = {"num_ids": 3, "tokenizer": {"fingerprint": fp, "vocab_size": 259, "name": "bytes"}}
    p = _save_map(tmp_path / "m.pt", [1, 2, 3], meta)
    assert load_vocab_map(p, vocab_size=384, fingerprint=fp).tolist() == [1, 2, 3]
    # Another regular vocabulary: refused, naming the sidecar.
    other = "v1-0000000000000000-" + fp.split("-")[2]
    with pytest.raises(VocabMapError, match=r"m.json: map built for another tokenizer"):
        load_vocab_map(p, vocab_size=384, fingerprint=other)
    # Only the special tokens differ: accepted.
    same_regular = "-".join(fp.split("-")[:2]) + "-ffffffffffffffff"
    assert load_vocab_map(p, vocab_size=384, fingerprint=same_regular).numel() == 3
    # Built for a larger vocabulary than the model has.
    with pytest.raises(VocabMapError, match=r"259 tokens, but the model's vocab_size is 100"):
        load_vocab_map(p, vocab_size=100)
    # Sidecar from another map.
    meta["num_ids"] = 4
    p.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(VocabMapError, match=r"num_ids=4 but m.pt holds 3"):
        load_vocab_map(p, vocab_size=384)


def test_fingerprint_separates_regular_and_special(tmp_path):
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    def make(vocab, specials):
        t = Tokenizer(models.WordLevel(vocab=vocab, unk_token="a"))
        t.add_special_tokens(specials)
        return PreTrainedTokenizerFast(tokenizer_object=t)

    a = tokenizer_fingerprint(make({"a": 0, "b": 1}, ["<s>"]))
    b = tokenizer_fingerprint(make({"a": 0, "b": 1}, ["<t>"]))
    c = tokenizer_fingerprint(make({"a": 1, "b": 0}, ["<s>"]))
    assert a == tokenizer_fingerprint(make({"a": 0, "b": 1}, ["<s>"]))  # stable
    assert a.split("-")[1] == b.split("-")[1] and a.split("-")[2] != b.split("-")[2]
    assert a.split("-")[1] != c.split("-")[1]


def test_resolve_map_path(tmp_path):
    p = _save_map(tmp_path / "x.pt", [1])
    assert resolve_map_path(str(p)) == p
    with pytest.raises(VocabMapError, match=r"'no-such-map': no such file, and not a shipped map name"):
        resolve_map_path("no-such-map")


# ---------------------------------------------------------------- language detection


def test_classify_partial_utf8():
    zhong = "中".encode()  # E4 B8 AD
    assert classify_token_bytes(zhong) == CJK
    assert classify_token_bytes(zhong[:1]) == CJK  # lead byte of a CJK character
    assert classify_token_bytes(zhong[1:]) == NEUTRAL  # continuation bytes only
    assert classify_token_bytes(b" the") == OTHER
    assert classify_token_bytes("é".encode()[:1]) == NEUTRAL  # a Latin-1 lead: not CJK
    assert classify_token_bytes("，".encode()) == CJK  # full-width comma
    assert classify_token_bytes("—".encode()[:1]) == NEUTRAL  # E2: general punctuation, not CJK


def _prompt(tok, text):
    return tok.apply_chat_template([{"role": "user", "content": text}], tokenize=True, add_generation_prompt=True)


def _ids(x):
    return x["input_ids"] if isinstance(x, dict) or hasattr(x, "keys") else x


def test_language_detection_byte_tokenizer(byte_tok):
    det = LanguageDetector(byte_tok, zh_threshold=0.1)
    en = _ids(_prompt(byte_tok, "Write a haiku about the sea and explain the meter."))
    zh = _ids(_prompt(byte_tok, "请用三句话介绍一下长城的历史。"))
    mixed_zh = _ids(_prompt(byte_tok, "Translate to English: 今天天气很好，我们去公园散步吧。"))
    mostly_en = _ids(_prompt(byte_tok, "Explain in detail how a hash table handles collisions, in English (中文)."))
    assert det.detect(en) == "en"
    assert det.detect(zh) == "zh"
    assert det.detect(mixed_zh) == "zh"
    assert det.detect(mostly_en) == "en"
    assert det.cjk_share(zh) > 0.4  # template bytes ("user", "assistant") count as other
    assert LanguageDetector(byte_tok, zh_threshold=0.9).detect(mixed_zh) == "en"
    assert det.detect([]) == "en" and det.detect([10**6]) == "en"  # nothing countable -> default


# ---------------------------------------------------------------- the pruned head


def _head(V=300, H=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(V, H, generator=g)
    maps = {
        "en": torch.randperm(V, generator=g)[:40],
        "zh": torch.randperm(V, generator=g)[:25],
        "full": None,
    }
    return W, maps, PrunedDraftHead(W, maps)


def test_pruned_argmax_equals_restricted_full_argmax():
    W, maps, head = _head()
    hidden = torch.randn(64, 16, generator=torch.Generator().manual_seed(1))
    langs = ["en", "zh", "full", "en"] * 16  # mixed batch
    got = head.argmax(hidden, langs)
    full = hidden @ W.T
    for r, lang in enumerate(langs):
        ids = maps[lang]
        want = full[r].argmax() if ids is None else ids[full[r, ids].argmax()]
        assert int(got[r]) == int(want)
        if ids is not None:
            assert int(got[r]) in set(ids.tolist())  # ids map back to full-vocab ids of the map
    # Single-language batches take a shortcut; same answer.
    for lang, ids in maps.items():
        one = head.argmax(hidden, [lang] * 64)
        want = full.argmax(-1) if ids is None else ids[full[:, ids].argmax(-1)]
        assert one.tolist() == want.tolist()


def test_rows_whose_best_token_is_outside_their_map_draft_the_best_map_token():
    W, maps, head = _head()
    outside = [i for i in range(300) if i not in set(maps["en"].tolist())][:4]
    hidden = 10 * W[outside]  # each row's full-vocabulary argmax is an id the en map does not hold
    full = hidden @ W.T
    assert set(full.argmax(-1).tolist()) == set(outside)
    got = head.argmax(hidden, ["en", "en", "full", "en"])
    for r, tok in enumerate(got.tolist()):
        if r == 2:
            assert tok == outside[2]  # the full-vocabulary row is not restricted
        else:
            assert tok in set(maps["en"].tolist()) and tok == int(maps["en"][full[r, maps["en"]].argmax()])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("rows", [40, 300, 4096])  # small GEMMs and large ones take different vLLM CPU kernels
def test_vllm_kernel_head_drafts_what_the_plain_head_drafts(rows, dtype):
    """The serving head scores through vLLM's own prepared linear kernel (integration.linear.draft_linear,
    oneDNN / small-GEMM on CPU); its logits and drafts must be the plain matmul's."""
    from vllm_fastmtp.integration.linear import draft_linear

    g = torch.Generator().manual_seed(rows)
    V, H = rows + 7, 64
    W = torch.randn(V, H, generator=g).to(dtype)
    maps = {"en": torch.randperm(V, generator=g)[:rows], "full": None}
    # "vllm" forces vLLM's kernel for fp32 too (the serving default, "auto", times both kernels there)
    plain, fast = PrunedDraftHead(W, maps), PrunedDraftHead(W, maps, linear=lambda w: draft_linear(w, kernel="vllm"))
    hidden = torch.randn(5, H, generator=g).to(dtype)
    for lang in maps:
        want, got = plain.sub_logits(hidden, lang).float(), fast.sub_logits(hidden, lang).float()
        assert got.shape == want.shape
        tol = 1e-4 if dtype == torch.float32 else 3e-2
        torch.testing.assert_close(got, want, rtol=tol, atol=tol * want.abs().max().item())
    langs = ["en", "full", "en", "en", "full"]
    want, got = plain.argmax(hidden, langs), fast.argmax(hidden, langs)
    if dtype == torch.float32:
        assert got.tolist() == want.tolist()
    else:  # bf16 accumulation order may swap near-ties; a swapped row must be a near-tie of the plain logits
        for r, (a, b) in enumerate(zip(got.tolist(), want.tolist())):
            if a != b:
                full = (hidden[r:r + 1].float() @ W.float().T)[0]
                assert abs(full[a] - full[b]) <= 3e-2 * full.abs().max()
    one = fast.argmax(hidden, ["en"] * 5)  # the one-language fast path agrees with the row-group path
    assert one[[0, 2, 3]].tolist() == got[[0, 2, 3]].tolist()


def test_fp32_auto_kernel_is_one_of_the_two_and_computes_the_same_logits(monkeypatch):
    """For fp32 rows "auto" times torch's matmul against vLLM's kernel on the rows themselves and keeps one of them;
    whichever it keeps scores like the plain matmul, and the head reports which (the start-up log, stats). A second
    map of the same shape takes the same kernel without timing again; another shape is timed."""
    from vllm_fastmtp.integration import linear
    from vllm_fastmtp.integration.linear import draft_linear

    timed = []
    real_time_kernels = linear._time_kernels
    monkeypatch.setattr(linear, "_PICKED", {})
    monkeypatch.setattr(linear, "_time_kernels", lambda c, k, d: timed.append(k) or real_time_kernels(c, k, d))
    g = torch.Generator().manual_seed(3)
    W = torch.randn(600, 64, generator=g)
    f = draft_linear(W)
    assert f.kernel in ("torch", "vllm") and len(timed) == 1
    x = torch.randn(4, 64, generator=g)
    torch.testing.assert_close(f(x), x @ W.T, rtol=1e-4, atol=1e-4)
    W2 = torch.randn(600, 64, generator=g)  # another map of the same size (zh-8k beside en-8k)
    f2 = draft_linear(W2)
    assert f2.kernel == f.kernel and len(timed) == 1
    torch.testing.assert_close(f2(x), x @ W2.T, rtol=1e-4, atol=1e-4)  # its own rows, not the first map's
    assert draft_linear(W[:300]).kernel in ("torch", "vllm") and len(timed) == 2
    assert draft_linear(W, kernel="torch").kernel == "torch" and draft_linear(W, kernel="vllm").kernel == "vllm"
    assert draft_linear(W.bfloat16()).kernel == "vllm"  # bf16/fp16 rows always take vLLM's kernel
    with pytest.raises(ValueError, match=r"kernel must be one of"):
        draft_linear(W, kernel="mkl")
    head = PrunedDraftHead(W, {"en": torch.arange(100), "zh": None},
                           linear=lambda rows: draft_linear(rows, kernel="torch"))
    assert head.kernels == {"en": "torch"} and "en: 100 ids (torch kernel), zh: full" in head.describe()


def test_pick_faster_weighs_every_batch_size_alike():
    """The kernel choice: lowest geometric mean over the batch sizes timed, so a 2x win at batch 1 is not outvoted
    by a small absolute loss at batch 8 (and the reverse); ties keep the first kernel listed."""
    from vllm_fastmtp.integration.linear import pick_faster

    # an AVX2-only EPYC as measured: vLLM's kernel faster at both sizes
    assert pick_faster({"torch": {1: 2.16e-3, 8: 6.92e-3}, "vllm": {1: 1.40e-3, 8: 2.21e-3}}) == "vllm"
    # torch 20 % faster at batch 1 and as fast at 8 (an AVX-512 EPYC at batch 1)
    assert pick_faster({"torch": {1: 1.03e-3, 8: 2.0e-3}, "vllm": {1: 1.25e-3, 8: 2.0e-3}}) == "torch"
    # 2x faster at batch 1, 1.5x slower at batch 8: the geometric mean favours the batch-1 win (sum would not)
    assert pick_faster({"torch": {1: 2.0e-3, 8: 4.0e-3}, "vllm": {1: 1.0e-3, 8: 6.0e-3}}) == "vllm"
    assert pick_faster({"torch": {1: 1e-3}, "vllm": {1: 1e-3}}) == "torch"


def test_plain_linears_are_packed_in_place_with_the_same_math():
    """`pack_plain_linears` swaps exact ``torch.nn.Linear`` layers (MiMo's MTP input_proj) for vLLM's prepared CPU
    GEMM: same parameters (shared, not copied), same outputs; layers of other types are left alone."""
    from vllm_fastmtp.integration.linear import pack_plain_linears

    class Sub(torch.nn.Linear):  # stands for any other linear type: not swapped
        pass

    torch.manual_seed(0)
    model = torch.nn.Module()
    model.block = torch.nn.Module()
    model.block.proj = torch.nn.Linear(96, 40, bias=False)
    model.out = torch.nn.Linear(40, 24, bias=True)
    model.other = Sub(24, 8)
    weights = [model.block.proj.weight, model.out.weight, model.out.bias]
    x = torch.randn(5, 96)
    want = model.other(model.out(model.block.proj(x)))
    assert pack_plain_linears(model) == ["block.proj", "out"]
    assert type(model.block.proj) is not torch.nn.Linear and type(model.other) is Sub
    assert all(a is b for a, b in zip([model.block.proj.weight, model.out.weight, model.out.bias], weights))
    got = model.other(model.out(model.block.proj(x)))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert pack_plain_linears(model) == []  # nothing left to pack


def test_draft_argmax_widens_half_logits_without_changing_ids():
    from vllm_fastmtp.draft_vocab import _argmax

    g = torch.Generator().manual_seed(5)
    logits = torch.randn(7, 8192, generator=g).to(torch.bfloat16)
    logits[0, [10, 20]] = 50.0  # a tie: the first index wins either way
    assert _argmax(logits).tolist() == logits.argmax(-1).tolist() and int(_argmax(logits)[0]) == 10


def test_full_vocabulary_language_is_never_prepared_as_a_copy():
    """A null map scores through ``full`` (serving: the model's compute_logits over vLLM's already-prepared lm_head)
    and never asks ``linear`` to prepare the whole lm_head again (a second ~1.2 GB copy in bf16 on MiMo-7B)."""
    g = torch.Generator().manual_seed(0)
    W = torch.randn(330, 16, generator=g)  # rows beyond vocab_size 300 are padding
    prepared, called = [], []

    def linear(rows):
        prepared.append(rows.shape[0])
        return lambda x: x @ rows.T

    def full(x):
        called.append(x.shape[0])
        return x @ W.T  # padded like vLLM's logits may be

    en = torch.randperm(300, generator=g)[:50]
    head = PrunedDraftHead(W, {"en": en, "zh": None}, vocab_size=300, linear=linear, full=full)
    assert prepared == [50]  # the map's rows only
    hidden = torch.randn(4, 16, generator=g)
    W[300:] = 1e4  # a padded row must not win through ``full``
    got = head.argmax(hidden, ["zh", "en", "zh", "zh"])
    assert called == [3]
    ref = hidden @ W[:300].T
    assert got[[0, 2, 3]].tolist() == ref[[0, 2, 3]].argmax(-1).tolist()
    assert got[1].item() == en[ref[1, en].argmax()].item()
    plain = PrunedDraftHead(W, {"zh": None}, vocab_size=300, linear=linear)  # no ``full``: a matmul over a view
    assert prepared == [50] and plain.argmax(hidden, ["zh"] * 4).tolist() == ref.argmax(-1).tolist()


def test_bf16_pick_under_an_fp32_model_keeps_the_map_and_drafts_the_same_tokens():
    """``dtype=bfloat16`` keeps the map rows in bf16 (half the bytes a pick reads) while a null map still scores
    in the model's fp32 through ``full``; drafts match the fp32 pick except on near-ties."""
    g = torch.Generator().manual_seed(3)
    W = torch.randn(300, 64, generator=g)
    en = torch.randperm(300, generator=g)[:120]
    seen = []

    def full(x):
        seen.append(x.dtype)
        return x @ W.T

    ref = PrunedDraftHead(W, {"en": en, "zh": None}, full=full)
    half = PrunedDraftHead(W, {"en": en, "zh": None}, full=full, dtype=torch.bfloat16)
    assert half.dtype == torch.bfloat16 and half.sub_logits(torch.randn(2, 64), "en").dtype == torch.bfloat16
    assert "map rows in bfloat16" in half.describe() and "map rows in float32" in ref.describe()
    hidden = torch.randn(200, 64, generator=g)
    want, got = ref.argmax(hidden, ["en"] * 200), half.argmax(hidden, ["en"] * 200)
    logits = hidden @ W.T
    differ = (want != got).nonzero().flatten().tolist()
    assert len(differ) <= 4  # bf16 rounding only swaps near-ties
    for r in differ:
        assert int(got[r]) in set(en.tolist())
        assert logits[r, want[r]] - logits[r, got[r]] <= 2e-2 * logits[r].abs().max()
    seen.clear()
    assert half.argmax(hidden[:3], ["zh"] * 3).tolist() == logits[:3].argmax(-1).tolist()
    assert seen == [torch.float32]  # the full vocabulary is scored by the model's own fp32 lm_head


def test_resolve_pick_dtype():
    from vllm_fastmtp.draft_vocab import resolve_pick_dtype
    from vllm_fastmtp.precision import bf16_native

    auto = resolve_pick_dtype("auto", torch.float32, "cpu")
    assert auto == (torch.bfloat16 if bf16_native("cpu") else torch.float32)
    assert resolve_pick_dtype("auto", torch.bfloat16, "cpu") == torch.bfloat16  # never widened
    assert resolve_pick_dtype("auto", torch.float16, "cpu") == torch.float16
    assert resolve_pick_dtype("model", torch.float32, "cpu") == torch.float32
    assert resolve_pick_dtype("bfloat16", torch.float32, "cpu") == torch.bfloat16
    with pytest.raises(ValueError, match=r"pick_dtype must be one of"):
        resolve_pick_dtype("int8", torch.float32, "cpu")


def test_padded_vocab_and_errors():
    W = torch.randn(320, 8)  # padded rows beyond vocab_size 300
    with pytest.raises(VocabMapError, match=r"map 'en': token id 310 >= vocab_size 300"):
        PrunedDraftHead(W, {"en": torch.tensor([1, 310])}, vocab_size=300)
    W[300:] = 100.0  # padded rows would win an argmax over all 320 rows
    head = PrunedDraftHead(W, {"en": None}, vocab_size=300)
    hidden = torch.ones(2, 8)
    assert (hidden @ W.T).argmax(-1).min() >= 300
    assert head.argmax(hidden, ["en", "en"]).max() < 300  # the full map stops at vocab_size
    with pytest.raises(KeyError, match=r"no draft vocabulary map for language 'fr'"):
        head.argmax(torch.randn(1, 8), ["fr"])


# ---------------------------------------------------------------- serving config


def test_config_parse_and_load(tmp_path, byte_tok):
    en = _save_map(tmp_path / "en.pt", [ord(c) for c in "etaoin shrdlu"[:7]] + [258])
    zh = _save_map(tmp_path / "zh.pt", [0xE4, 0xE5, 0xE6, 0xB8, 0xAD, 258])
    cfg = DraftVocabConfig.parse({"maps": {"en": str(en), "zh": str(zh)}, "default": "en", "zh_threshold": 0.2})
    maps, det = cfg.load(byte_tok, vocab_size=384)
    assert maps["zh"].tolist() == [0xE4, 0xE5, 0xE6, 0xB8, 0xAD, 258]
    zh_prompt = _ids(_prompt(byte_tok, "你好，世界"))
    assert cfg.language_for(det, zh_prompt) == "zh"
    only_en = DraftVocabConfig.parse(str(en))
    assert only_en.language_for(det, zh_prompt) == "en"  # no zh map -> default
    assert DraftVocabConfig.parse(None) is None


@pytest.mark.parametrize(
    "raw, match",
    [
        ({"maps": {"en": "a"}, "defualt": "en"}, r"unknown keys \['defualt'\]"),
        ({"maps": {}}, r"draft_vocab.maps: expected a non-empty object"),
        ({"maps": {"en": "a"}, "default": "zh"}, r"default 'zh' is not one of the maps"),
        ({"maps": {"en": "a"}, "zh_threshold": 2}, r"zh_threshold: expected a number in \(0, 1\]"),
        ({"maps": {"en": 3}}, r"draft_vocab.maps.en: expected a map name/path or null"),
        ({"maps": {"en": "a"}, "pick_dtype": "fp8"}, r"draft_vocab.pick_dtype: expected one of \['auto', 'model'"),
        ({"maps": {"en": "a"}, "pick_kernel": "mkl"}, r"draft_vocab.pick_kernel: expected one of \['auto', 'vllm'"),
        (5, r"expected null, a map name/path, or an object"),
    ],
)
def test_config_errors(raw, match):
    with pytest.raises(VocabMapError, match=match):
        DraftVocabConfig.parse(raw)


def test_hub_map_fails_clearly_offline(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # huggingface_hub reads the variable once, at import (transformers has imported it already in this process):
    # without this the download really goes out and fails only after its network timeouts (~23 s)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(VocabMapError, match=r"could not fetch maps/en\.pt from hub repo someone/maps .*offline\?"):
        resolve_map_path("hf://someone/maps/maps/en.pt")
    with pytest.raises(VocabMapError, match=r"expected hf://owner/repo/path/to/map.pt"):
        resolve_map_path("hf://only-owner/file.pt")

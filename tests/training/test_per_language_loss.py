"""The loss over several draft maps: each conversation's CE over the map of its prompt's language (as vLLM drafts
it), pooled over the batch; finetune choosing the map with the serving code's detector; named refusals."""

import json

import pytest
import torch
from safetensors.torch import load_file

from training.cache_states import build_cache
from training.checkpoint_io import load_main_model
from training.from_cache import StatesCollator
from training.mtp_head import MTPHead, chain_outputs, drafts_from_states, states_mtp_loss, step_weights
from vllm_fastmtp.conventions import POST_NORM
from vocab_maps.format import save_map

from tests.training.test_finetune import cache_args

torch.set_num_threads(1)
V = 384  # the tiny checkpoint's vocabulary (byte tokenizer)


def _chat(path, n_en=6, n_zh=4):
    """English and Chinese conversations (the byte tokenizer spells a CJK character as three bytes 0xE3-0xE9..)."""
    import random

    rng = random.Random(0)
    zh = "你好世界中文数学问题回答"
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n_en + n_zh):
            chars = zh if i >= n_en else "abcdefghij klmnop"
            msgs = [{"role": "user", "content": "".join(rng.choice(chars) for _ in range(12))},
                    {"role": "assistant", "content": "".join(rng.choice(chars) for _ in range(25))}]
            f.write(json.dumps({"messages": msgs}, ensure_ascii=False) + "\n")
    return path


@pytest.fixture(scope="module")
def mixed(tiny_random_mimo, tmp_path_factory):
    d = tmp_path_factory.mktemp("per_language")
    data = _chat(d / "train.jsonl")
    cache = build_cache(tiny_random_mimo, data, d / "cache", hidden_state=POST_NORM, top_n=5, dtype="float32",
                        progress=False)
    # English map: ASCII bytes; Chinese map: the UTF-8 bytes of CJK characters (and a few ASCII ones)
    en = save_map(d / "en.pt", list(range(32, 127)), {"language": "en"}, vocab_size=V)
    zh = save_map(d / "zh.pt", list(range(0x80, 0x100)) + list(range(97, 107)), {"language": "zh"}, vocab_size=V)
    return d, data, cache, en, zh


def _index(ids):
    index = torch.full((V,), -1, dtype=torch.long)
    index[ids] = torch.arange(len(ids))
    return index


def test_each_conversation_trains_over_its_own_map_pooled_over_the_batch(tiny_random_mimo, mixed):
    """states_mtp_loss with two maps and row groups equals a direct computation: at every step, the CE of each
    target against the log-softmax over its conversation's map, averaged over every target inside, steps weighted
    by alpha_k; targets outside their map are skipped and counted."""
    _, _, cache, _, _ = mixed
    main = load_main_model(tiny_random_mimo, torch.float32)
    head = MTPHead(main.config)
    head.load_checkpoint_tensors(load_file(str(tiny_random_mimo / "model.safetensors")))
    b = StatesCollator()([cache[i] for i in (0, 7, 1, 8)])
    groups = torch.tensor([0, 1, 0, 1])
    W = main.lm_head.weight.detach()
    vocab = [torch.arange(32, 127), torch.tensor(list(range(0x80, 0x100)) + list(range(97, 107)))]
    embeds = main.get_input_embeddings()(b["input_ids"]).detach()
    greedy = b["greedy"].long()
    kw = dict(num_steps=3, beta=0.6, label_source="greedy", greedy=greedy, form="serving")
    got, stats = states_mtp_loss(head, b["hidden"].float(), embeds, [W[v] for v in vocab], b["input_ids"],
                                 b["loss_mask"], vocab_index=[_index(v) for v in vocab], row_groups=groups, **kw)
    want, skipped, used = 0.0, 0, 0
    n = b["input_ids"].shape[1]
    with torch.no_grad():
        for k, out in chain_outputs(head, b["hidden"].float(), embeds, 3, "serving"):
            terms = []
            for row in range(4):
                ids = vocab[int(groups[row])]
                for i in range(n - k - 1):
                    if not b["loss_mask"][row, i + k + 1]:
                        continue
                    target = int(greedy[row, i + k])
                    hit = (ids == target).nonzero()
                    if len(hit) == 0:
                        skipped += 1
                        continue
                    terms.append(-torch.log_softmax(out[row, i] @ W[ids].T, -1)[int(hit[0, 0])])
            used += len(terms)
            want = want + step_weights(3, 0.6)[k - 1] * torch.stack(terms).mean()
    torch.testing.assert_close(got.detach(), want, rtol=1e-5, atol=1e-5)
    assert stats["skipped"] == skipped > 0 and stats["targets"] == used > 0
    # one map for every row (the union form) is a different loss: the Chinese rows' targets are normalised over
    # the English map's ids too
    union = torch.unique(torch.cat(vocab))
    one, _ = states_mtp_loss(head, b["hidden"].float(), embeds, W[union], b["input_ids"], b["loss_mask"],
                             vocab_index=_index(union), **kw)
    assert abs(float(one.detach()) - float(got.detach())) > 1e-3
    with pytest.raises(ValueError, match="2 vocabularies need as many indexes"):
        states_mtp_loss(head, b["hidden"].float(), embeds, [W[v] for v in vocab], b["input_ids"], b["loss_mask"],
                        vocab_index=[_index(v) for v in vocab], **kw)


def test_finetune_picks_each_conversations_map_as_served_and_evaluates_over_it(tiny_random_mimo, mixed, tmp_path):
    from training.finetune import build, parse_args, run

    d, data, cache, en, zh = mixed
    argv = cache_args(tiny_random_mimo, data, cache, tmp_path / "o", "--label_source", "greedy",
                       "--draft_vocab", f"{en},{zh}")
    b = build(*parse_args(argv))
    m = b.module
    assert m.vocab_names == ["en", "zh"] and b.data_info["draft_vocab_size"] == {"en": 95, "zh": 138}
    batch = b.collator([b.train[i] for i in range(10)])
    groups = m.row_groups(batch["input_ids"], batch["loss_mask"])
    assert groups.tolist() == [0] * 6 + [1] * 4  # the first six prompts are ASCII, the last four Chinese
    # evaluation drafts each conversation over its own map, exactly as drafting one conversation at a time
    m.eval()
    embeds = torch.nn.functional.embedding(batch["input_ids"], m.embed_weight)
    got = m.acceptance(batch["input_ids"], batch["attention_mask"], batch["loss_mask"], batch["hidden"], embeds,
                       batch["greedy"].long(), groups)
    for row in (0, 8):
        one = slice(row, row + 1)
        rows, ids, _ = m._vocab(int(groups[row]))
        drafts = drafts_from_states(m.head, batch["hidden"][one].float(), embeds[one].float(), rows.float(), 3, ids)
        assert set(drafts[drafts >= 0].unique().tolist()) <= set(ids.tolist())
        from training.mtp_head import acceptance_rows

        want = acceptance_rows(drafts, batch["greedy"][one].long(), batch["input_ids"][one],
                               batch["attention_mask"][one], batch["loss_mask"][one], 3)
        assert torch.equal(got[row], want[0])
    # it trains, and the record says which loss it used
    res = run(*parse_args(argv + ["--max_steps", "2", "--export", "head"]))
    assert res["used_targets"] > 0 and res["skipped_targets"] > 0
    rec = json.loads((tmp_path / "o" / "final" / "mtp_head.json").read_text())["fastmtp"]
    assert rec["data"]["vocab_loss"] == "per_language"
    union = build(*parse_args(argv + ["--vocab_loss", "union"])).module
    assert union.vocab_names == ["union"] and union.lm_rows_0.shape[0] == len(set(range(32, 127)) | set(range(0x80, 0x100)))


def test_maps_without_a_language_or_with_the_same_one_are_refused_by_name(tiny_random_mimo, mixed, tmp_path):
    from training.finetune import FinetuneConfigError, build, parse_args

    d, data, cache, en, zh = mixed
    bare = tmp_path / "bare.pt"
    torch.save(list(range(32, 127)), str(bare))  # no sidecar
    en2 = save_map(tmp_path / "en2.pt", list(range(40, 100)), {"language": "en"}, vocab_size=V)

    def argv(maps, *extra):
        return cache_args(tiny_random_mimo, data, cache, tmp_path / "o", "--draft_vocab", maps, *extra)

    with pytest.raises(FinetuneConfigError, match=r"bare.pt has no 'language' in its sidecar .*bare.json.*--vocab_loss union"):
        build(*parse_args(argv(f"{en},{bare}")))
    with pytest.raises(FinetuneConfigError, match=r"en.pt and .*en2.pt are both 'en' maps"):
        build(*parse_args(argv(f"{en},{en2}")))
    with pytest.raises(FinetuneConfigError, match=r"vocab_loss must be one of \('per_language', 'union'\)"):
        parse_args(argv(f"{en},{zh}", "--vocab_loss", "both"))
    # the union form needs no languages; one map is one vocabulary either way
    assert build(*parse_args(argv(f"{en},{bare}", "--vocab_loss", "union"))).module.vocab_names == ["union"]
    assert build(*parse_args(argv(str(bare)))).module.vocab_names == ["map"]

"""training.cache_states + training from the cache: cached values equal a fresh main-model pass, resume, named
refusals of foreign/stale/truncated caches, and the cached loss equal to the text path's loss."""

import json

import pytest
import torch
from safetensors.torch import load_file

from training.cache_states import StateCacheError, build_cache, open_cache
from training.checkpoint_io import load_main_model
from training.data import load_chat_jsonl
from training.from_cache import StatesCollator
from vllm_fastmtp.conventions import POST_NORM, PRE_NORM
from training.mtp_head import MTPHead, chain_outputs, main_hidden_states, mtp_loss, states_mtp_loss

from tests.training.test_finetune import args_for, cache_args, write_chat

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_chat(tmp_path_factory.mktemp("cache_data") / "train.jsonl", n=20)


@pytest.fixture(scope="module")
def fp32_cache(tiny_random_mimo, data, tmp_path_factory):
    out = tmp_path_factory.mktemp("cache") / "c"
    return build_cache(tiny_random_mimo, data, out, hidden_state=POST_NORM, top_n=5, dtype="float32",
                       shard_examples=6, batch_tokens=200, progress=False)


def test_cached_values_equal_a_fresh_main_model_pass(tiny_random_mimo, data, fp32_cache):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_random_mimo))
    examples, _ = load_chat_jsonl(data, tok, 10**6)
    assert len(fp32_cache) == len(examples) == 20
    assert len(fp32_cache.shards) == 4  # 6 + 6 + 6 + 2 examples
    main = load_main_model(tiny_random_mimo, torch.float32)
    for i in (0, 7, 19):  # first shard, middle, last
        item, ex = fp32_cache[i], examples[i]
        ids = torch.tensor([ex.input_ids])
        assert item["input_ids"].tolist() == ex.input_ids and item["loss_mask"].tolist() == ex.loss_mask
        with torch.no_grad():
            hidden, post = main_hidden_states(main, ids, None, POST_NORM)
            logp = torch.log_softmax(main.lm_head(post)[0].float(), -1)
        torch.testing.assert_close(item["hidden"].float(), hidden[0].to(torch.bfloat16).float())
        assert torch.equal(item["greedy"].long(), logp.argmax(-1))
        v, t = logp.topk(5, -1)
        assert torch.equal(item["top_ids"].long(), t)
        torch.testing.assert_close(item["top_logp"].float(), v.to(torch.bfloat16).float())


def test_rerun_reuses_and_an_interrupted_build_resumes_to_the_same_bytes(tiny_random_mimo, data, fp32_cache, tmp_path):
    kw = dict(hidden_state=POST_NORM, top_n=5, dtype="float32", shard_examples=6, batch_tokens=200, progress=False)
    out = tmp_path / "c"
    build_cache(tiny_random_mimo, data, out, **kw)
    m = json.loads((out / "manifest.json").read_text())
    # simulate a kill after two shards: the third shard never got into the manifest
    m["shards"], m["complete"] = m["shards"][:2], False
    (out / "manifest.json").write_text(json.dumps(m))
    (out / "shard-00003.safetensors").unlink()
    with pytest.raises(StateCacheError, match="unfinished"):
        open_cache(out)
    c = build_cache(tiny_random_mimo, data, out, **kw)
    assert len(c) == 20
    for name in ("shard-00000.safetensors", "shard-00003.safetensors"):
        a, b = load_file(str(out / name)), load_file(str(fp32_cache.dir / name))
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_foreign_stale_and_truncated_caches_are_refused_by_name(tiny_random_mimo, data, fp32_cache, tmp_path):
    from tests.fixtures.tiny_checkpoint import build_tiny_mimo

    kw = dict(top_n=5, dtype="float32", shard_examples=6, batch_tokens=200, progress=False)
    other_model = build_tiny_mimo(tmp_path / "other", init="random", seed=1)
    with pytest.raises(StateCacheError, match=r"manifest.json: .*main-model weights"):
        build_cache(other_model, data, fp32_cache.dir, hidden_state=POST_NORM, **kw)
    other_data = write_chat(tmp_path / "other.jsonl", n=20, seed=5)
    with pytest.raises(StateCacheError, match="training data"):
        build_cache(tiny_random_mimo, other_data, fp32_cache.dir, hidden_state=POST_NORM, **kw)
    with pytest.raises(StateCacheError, match="hidden-state convention: cache 'post_norm', this run 'pre_norm'"):
        build_cache(tiny_random_mimo, data, fp32_cache.dir, hidden_state=PRE_NORM, **kw)
    # a truncated shard in a copy of the cache
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(fp32_cache.dir, copy)
    shard = copy / "shard-00001.safetensors"
    shard.write_bytes(shard.read_bytes()[:-100])
    with pytest.raises(StateCacheError, match=r"shard-00001.safetensors: truncated or replaced shard"):
        open_cache(copy)
    (copy / "manifest.json").write_text("{not json")
    with pytest.raises(StateCacheError, match=r"manifest.json:1: not valid JSON"):
        open_cache(copy)
    with pytest.raises(StateCacheError, match="no manifest.json"):
        open_cache(tmp_path)


def _batch(cache, idx):
    return StatesCollator(pad_id=0)([cache[i] for i in idx])


def test_cached_loss_equals_the_text_path_loss(tiny_random_mimo, data, fp32_cache):
    """Same head, same batch: the loss from cached states equals mtp_loss over a main-model forward (up to the
    bf16 rounding of the cached hidden state), for data labels over the full vocabulary."""
    main = load_main_model(tiny_random_mimo, torch.float32)
    head = MTPHead(main.config)
    head.load_checkpoint_tensors(load_file(str(tiny_random_mimo / "model.safetensors")))
    b = _batch(fp32_cache, [0, 1, 2, 3])
    ref, _ = mtp_loss(main, head, b["input_ids"], b["loss_mask"], b["attention_mask"], num_steps=3, beta=0.6,
                      hidden_state=POST_NORM)
    embeds = main.get_input_embeddings()(b["input_ids"])
    got, stats = states_mtp_loss(head, b["hidden"].float(), embeds, main.lm_head.weight, b["input_ids"],
                                 b["loss_mask"], num_steps=3, beta=0.6)
    assert abs(float(got.detach()) - float(ref.detach())) < 2e-3 * float(ref.detach())
    assert stats["skipped"] == 0 and stats["targets"] > 0
    # a draft vocabulary holding every id changes nothing; a smaller one skips (and counts) what it lacks
    V = main.lm_head.weight.shape[0]
    every = torch.arange(V)
    same, _ = states_mtp_loss(head, b["hidden"].float(), embeds, main.lm_head.weight[every], b["input_ids"],
                              b["loss_mask"], num_steps=3, beta=0.6, vocab_index=every)
    torch.testing.assert_close(same, got)
    keep = torch.arange(0, V, 2)
    index = torch.full((V,), -1)
    index[keep] = torch.arange(len(keep))
    _, st = states_mtp_loss(head, b["hidden"].float(), embeds, main.lm_head.weight[keep], b["input_ids"],
                            b["loss_mask"], num_steps=3, beta=0.6, vocab_index=index)
    n = b["input_ids"].shape[1]
    odd = sum(int(((b["input_ids"][:, k + 1 : n] % 2 == 1) & b["loss_mask"][:, k + 1 : n]).sum()) for k in (1, 2, 3))
    assert st["skipped"] == odd > 0 and st["targets"] == stats["targets"] - odd


def test_greedy_labels_and_kl_use_the_cached_main_model_outputs(tiny_random_mimo, fp32_cache):
    main = load_main_model(tiny_random_mimo, torch.float32)
    head = MTPHead(main.config)
    head.load_checkpoint_tensors(load_file(str(tiny_random_mimo / "model.safetensors")))
    b = _batch(fp32_cache, [4, 5])
    embeds = main.get_input_embeddings()(b["input_ids"])
    common = dict(num_steps=2, beta=0.6)
    data_l, _ = states_mtp_loss(head, b["hidden"].float(), embeds, main.lm_head.weight, b["input_ids"],
                                b["loss_mask"], **common)
    # greedy labels == data labels when the data ARE the greedy tokens
    forced = b["input_ids"].clone()
    forced[:, 1:] = torch.where(b["loss_mask"][:, 1:], b["greedy"][:, :-1].long(), forced[:, 1:])
    g1, _ = states_mtp_loss(head, b["hidden"].float(), embeds, main.lm_head.weight, b["input_ids"], b["loss_mask"],
                            label_source="greedy", greedy=b["greedy"].long(), **common)
    g2, _ = states_mtp_loss(head, b["hidden"].float(), embeds, main.lm_head.weight, forced, b["loss_mask"], **common)
    torch.testing.assert_close(g1, g2)
    assert not torch.isclose(g1, data_l)
    # pure KL to the top-N >= 0, and soft-CE = KL + teacher entropy (> KL)
    kl, _ = states_mtp_loss(head, b["hidden"].float(), embeds, main.lm_head.weight, b["input_ids"], b["loss_mask"],
                            distill_weight=1.0, top_ids=b["top_ids"], top_logp=b["top_logp"], **common)
    sce, _ = states_mtp_loss(head, b["hidden"].float(), embeds, main.lm_head.weight, b["input_ids"], b["loss_mask"],
                             distill_weight=1.0, distill_loss="soft_ce", top_ids=b["top_ids"], top_logp=b["top_logp"],
                             **common)
    assert 0 <= float(kl) < float(sce)


def test_frozen_rows_take_the_fused_loss_with_the_same_loss_and_head_gradients(tiny_random_mimo, fp32_cache,
                                                                               monkeypatch):
    """finetune's rows are a frozen buffer, so its CE runs through training.linear_ce; trainable rows take the
    autograd form. Both give the same loss and the same gradient on every head parameter."""
    import training.mtp_head as mtp_head

    calls = []
    fused_ce = mtp_head.linear_cross_entropy
    monkeypatch.setattr(mtp_head, "linear_cross_entropy", lambda *a, **kw: calls.append(1) or fused_ce(*a, **kw))
    main = load_main_model(tiny_random_mimo, torch.float32)
    head = MTPHead(main.config)
    head.load_checkpoint_tensors(load_file(str(tiny_random_mimo / "model.safetensors")))
    b = _batch(fp32_cache, [0, 1, 2])
    embeds = main.get_input_embeddings()(b["input_ids"]).detach()
    keep = torch.arange(0, main.lm_head.weight.shape[0], 3)
    index = torch.full((main.lm_head.weight.shape[0],), -1)
    index[keep] = torch.arange(len(keep))
    rows = main.lm_head.weight.detach()[keep]
    results, calls_after = [], []
    for lm in (rows, rows.clone().requires_grad_(True)):
        head.zero_grad()
        loss, _ = states_mtp_loss(head, b["hidden"].float(), embeds, lm, b["input_ids"], b["loss_mask"],
                                  num_steps=3, beta=0.6, label_source="greedy", greedy=b["greedy"].long(),
                                  vocab_index=index, form="serving")
        loss.backward()
        results.append((loss.detach(), {n: p.grad.clone() for n, p in head.named_parameters()}))
        calls_after.append(len(calls))
    assert calls_after == [3, 3]  # once a step, frozen rows only
    (fused, g_fused), (plain, g_plain) = results
    torch.testing.assert_close(fused, plain, rtol=1e-6, atol=1e-6)
    for name, g in g_plain.items():
        torch.testing.assert_close(g_fused[name], g, rtol=1e-4, atol=1e-6, msg=name)
    assert g_fused["input_proj.weight"].abs().sum() > 0


def test_serving_form_differs_from_the_paper_form_only_after_step_one(tiny_random_mimo, fp32_cache):
    main = load_main_model(tiny_random_mimo, torch.float32)
    head = MTPHead(main.config)
    head.load_checkpoint_tensors(load_file(str(tiny_random_mimo / "model.safetensors")))
    b = _batch(fp32_cache, [0])
    embeds = main.get_input_embeddings()(b["input_ids"])
    with torch.no_grad():
        paper = dict(chain_outputs(head, b["hidden"].float(), embeds, 3, "paper"))
        serving = dict(chain_outputs(head, b["hidden"].float(), embeds, 3, "serving"))
    torch.testing.assert_close(paper[1], serving[1], rtol=1e-5, atol=1e-5)
    for k in (2, 3):  # paper: step-(k-1) outputs of earlier anchors; serving: their step-1 K/V + own chain
        assert (paper[k] - serving[k]).abs().max() > 1e-3
    # gradients reach the head through the serving form
    out = list(chain_outputs(head, b["hidden"].float(), embeds, 3, "serving"))[-1][1]
    out.sum().backward()
    assert head.input_proj.weight.grad is not None and head.input_proj.weight.grad.abs().sum() > 0


def test_finetune_from_the_cache_trains_evaluates_and_records(tiny_random_mimo, data, tmp_path):
    from training.finetune import parse_args, run

    ev = write_chat(tmp_path / "eval.jsonl", n=6, seed=3)
    res = run(*parse_args(args_for(
        tiny_random_mimo, data, tmp_path / "o", "--max_steps", "6", "--cache_dir", str(tmp_path / "cache"),
        "--eval_file", str(ev), "--eval_cache_dir", str(tmp_path / "ecache"), "--label_source", "greedy",
        "--train_form", "serving", "--distill_weight", "0.3", "--eval_strategy", "steps", "--eval_steps", "3",
        "--learning_rate", "5e-3",
    )))
    m = res["metrics"]
    assert m["eval_accept_anchors"] > 0 and 0 <= m["eval_accept_pos1"] <= 1
    first = res["eval_history"][0]["eval_loss"]
    assert m["eval_loss"] < first  # it learns
    rec = json.loads((tmp_path / "o" / "final" / "config.json").read_text())["fastmtp"]
    assert rec["data"]["label_source"] == "greedy" and rec["data"]["train_form"] == "serving"
    assert rec["data"]["cache_key"]["hidden_state"] == POST_NORM
    # second run: the cache is reused as is (no rebuild: the shard files keep their mtime)
    mtimes = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "cache").glob("shard-*")}
    run(*parse_args(args_for(tiny_random_mimo, data, tmp_path / "o2", "--max_steps", "1",
                             "--cache_dir", str(tmp_path / "cache"))))
    assert mtimes == {p.name: p.stat().st_mtime_ns for p in (tmp_path / "cache").glob("shard-*")}


def test_finetune_refuses_a_stale_cache_and_a_foreign_draft_vocab(tiny_random_mimo, data, fp32_cache, tmp_path):
    from training.finetune import FinetuneConfigError, build, parse_args

    # fp32_cache was built with the pre... no: post_norm; asking for pre_norm on it must fail before training
    with pytest.raises(FinetuneConfigError, match="hidden-state convention"):
        build(*parse_args(args_for(tiny_random_mimo, data, tmp_path / "o", "--cache_dir", str(fp32_cache.dir),
                                   "--hidden_state", PRE_NORM, "--cache_top_n", "5")))
    # a cache alone (no --train_file to fingerprint) is still checked against the model and the convention
    no_data = [a for a in args_for(tiny_random_mimo, data, tmp_path / "o", "--cache_dir", str(fp32_cache.dir))]
    i = no_data.index("--train_file")
    del no_data[i : i + 2]
    assert len(build(*parse_args(no_data)).train) == 20
    with pytest.raises(FinetuneConfigError, match="hidden-state convention: cache 'post_norm', this run 'pre_norm'"):
        build(*parse_args(no_data + ["--hidden_state", PRE_NORM]))
    with pytest.raises(FinetuneConfigError, match=r"draft_vocab: .*qwen2-en-16k.*151"):
        build(*parse_args(args_for(tiny_random_mimo, data, tmp_path / "o", "--cache_dir", str(tmp_path / "c2"),
                                   "--draft_vocab", "qwen2-en-16k")))
    with pytest.raises(FinetuneConfigError, match="label_source needs cache_dir"):
        build(*parse_args(args_for(tiny_random_mimo, data, tmp_path / "o", "--label_source", "greedy")))


def test_finetune_batches_by_length_and_reads_only_the_ids_to_sort(tiny_random_mimo, tmp_path):
    """finetune's default sampler groups conversations of similar length (less padding for the head's K passes);
    an item reads its tensors lazily, so the sampler learning the lengths does not read every hidden state."""
    from transformers import Trainer
    from transformers.trainer_pt_utils import LengthGroupedSampler

    from training.finetune import build, parse_args

    data = tmp_path / "varied.jsonl"
    sizes = [4 + (17 * i) % 57 for i in range(48)]  # 48 lengths in 4..60, in no order
    data.write_text("".join(write_chat(tmp_path / f"l{i}.jsonl", n=1, seed=i, length=n).read_text()
                            for i, n in enumerate(sizes)))
    fa, ta = parse_args(args_for(tiny_random_mimo, data, tmp_path / "o", "--cache_dir", str(tmp_path / "c")))
    assert ta.train_sampling_strategy == "group_by_length"
    b = build(fa, ta)
    sampler = Trainer(model=b.module, args=ta, train_dataset=b.train, data_collator=b.collator)._get_train_sampler()
    lengths = b.train.lengths
    assert isinstance(sampler, LengthGroupedSampler) and sampler.lengths == lengths and len(set(lengths)) > 40

    def padded(order, bs=ta.per_device_train_batch_size):
        return sum(max(lengths[j] for j in order[s : s + bs]) * len(order[s : s + bs]) for s in range(0, len(order), bs))

    order = list(sampler)
    assert sorted(order) == list(range(48))
    # the sampler sorts mega-batches of 3 batches (48 // 16) by length: much less padding than the data's order
    print("padded tokens: grouped", padded(order), "data order", padded(list(range(48))), "real", sum(lengths))
    assert padded(order) - sum(lengths) < 0.5 * (padded(list(range(48))) - sum(lengths))
    item = b.train[3]
    assert len(item["input_ids"]) == lengths[3] and list(item._read) == ["input_ids"]
    assert set(item) == {"input_ids", "loss_mask", "hidden", "greedy", "top_ids", "top_logp"}
    with pytest.raises(KeyError):
        item["offsets"]


def test_rows_cast_once_under_autocast_give_the_same_loss(tiny_random_mimo, data, fp32_cache, tmp_path):
    """The draft-vocabulary rows are cast to the autocast dtype once per run, not at every matmul: same loss."""
    from training.finetune import build, parse_args

    argv = cache_args(tiny_random_mimo, data, fp32_cache, tmp_path / "o", "--label_source", "greedy")
    module = build(*parse_args(argv)).module.train()
    batch = StatesCollator()([fp32_cache[j] for j in range(4)])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cast_once = module(**batch)["loss"]
        assert module._cast_rows[0].dtype == torch.bfloat16
        module.loss_rows = lambda g=0: module.lm_rows_0  # autocast casts the fp32 buffer itself
        recast = module(**batch)["loss"]
    assert module.lm_rows_0.dtype == torch.float32  # evaluation keeps the exact rows
    assert torch.equal(cast_once, recast)


def test_several_caches_train_as_one_set_and_mismatched_lists_are_refused(tiny_random_mimo, data, tmp_path):
    """New data is cached on its own beside the old cache; finetune reads both as one training set."""
    from training.finetune import FinetuneConfigError, build, parse_args

    more = write_chat(tmp_path / "more.jsonl", n=7, seed=11)
    both = f"{tmp_path / 'cache'},{tmp_path / 'more-cache'}"
    b = build(*parse_args(args_for(tiny_random_mimo, data, tmp_path / "o", "--cache_dir", both,
                                   "--train_file", f"{data},{more}", "--label_source", "greedy")))
    old_cache, more_cache = open_cache(tmp_path / "cache"), open_cache(tmp_path / "more-cache")
    assert len(old_cache) == 20 and len(b.train) == 20 + 7
    assert b.data_info["train_assistant_tokens"] == old_cache.assistant_tokens() + more_cache.assistant_tokens()
    last = b.train[26]
    assert torch.equal(last["input_ids"], more_cache[6]["input_ids"])
    with pytest.raises(FinetuneConfigError, match="give one train file per cache"):
        build(*parse_args(args_for(tiny_random_mimo, data, tmp_path / "o", "--cache_dir", both)))


def test_train_throughput_benchmark_runs_both_paths_on_the_same_data(tiny_random_mimo, data, tmp_path):
    from benchmarks.train_throughput import main

    assert main(["--model", str(tiny_random_mimo), "--data", str(data), "--examples", "8", "--batch", "4",
                 "--out", str(tmp_path / "tp")]) == 0
    res = json.loads((tmp_path / "tp" / "results.json").read_text())
    assert res["conversations"] == 8 and res["assistant_tokens"] > 0
    old, old_random, old_kept, new = res["configs"].values()
    # one epoch of the same 8 conversations each
    assert old["steps"] == old_random["steps"] == old_kept["steps"] == new["steps"] == 2
    assert old["x_old"] == 1.0 and new["target_tokens_per_s"] > 0
    md = (tmp_path / "tp" / "results.md").read_text()
    assert "| old: text path, fp32, length-grouped (the committed pipeline) |" in md
    assert "| new: cached states, full vocabulary, length-grouped |" in md


def test_hidden_noise_perturbs_training_only_relative_to_each_vector(tiny_random_mimo, data, fp32_cache, tmp_path):
    """--hidden_noise a: in training the head reads hidden + U(-a, a) x each vector's RMS (a different loss, the
    same one again under the same torch seed); evaluation reads the cached states as they are; recorded in the
    head's metadata only when set; out-of-range values and use without a cache are refused at parse time."""
    from training.finetune import FinetuneConfigError, build, parse_args

    def module_for(*extra):
        argv = cache_args(tiny_random_mimo, data, fp32_cache, tmp_path / "o", "--label_source", "greedy",
                          "--bf16", "false", *extra)
        return build(*parse_args(argv)).module

    batch = StatesCollator()([fp32_cache[j] for j in range(4)])
    plain, noisy = module_for(), module_for("--hidden_noise", "0.2")
    noisy.head.load_state_dict(plain.head.state_dict())
    with torch.no_grad():
        clean = plain.train()(**batch)["loss"]
        torch.manual_seed(0)
        first = noisy.train()(**batch)["loss"]
        torch.manual_seed(0)
        again = noisy(**batch)["loss"]
        assert not torch.equal(first, clean) and torch.equal(first, again)
        assert torch.equal(noisy.eval()(**batch)["loss"], plain.eval()(**batch)["loss"])
        h = batch["hidden"].float()
        shift = (noisy.noisy(h) - h).abs() / h.pow(2).mean(-1, keepdim=True).sqrt()
        assert 0.1 < float(shift.max()) <= 0.2 + 1e-6  # bounded by a x RMS, per vector
        assert torch.equal(plain.noisy(h), h)
    from training.finetune import fastmtp_record

    fa_plain, _ = parse_args(args_for(tiny_random_mimo, data, tmp_path / "o", "--cache_dir", "c"))
    fa_noisy, _ = parse_args(args_for(tiny_random_mimo, data, tmp_path / "o", "--cache_dir", "c",
                                      "--hidden_noise", "0.2"))
    assert "hidden_noise" not in fastmtp_record(fa_plain, 1, {}, "m")
    assert fastmtp_record(fa_noisy, 1, {}, "m")["hidden_noise"] == 0.2
    for bad in ("-0.1", "1.5"):
        with pytest.raises(FinetuneConfigError, match="hidden_noise must be in"):
            parse_args(args_for(tiny_random_mimo, data, tmp_path / "o", "--cache_dir", "c", "--hidden_noise", bad))
    with pytest.raises(FinetuneConfigError, match="hidden_noise needs cache_dir"):
        parse_args(args_for(tiny_random_mimo, data, tmp_path / "o", "--hidden_noise", "0.1"))

"""Bad fastmtp configurations fail with a specific message while the engine config is built, before serving.

These go through real vLLM: `EngineArgs.create_engine_config()` is what `vllm serve` and `vllm.LLM` run first.
"""

import dataclasses
import json
import pickle
import shutil
from importlib.metadata import entry_points

import pytest
from safetensors.torch import load_file, save_file

from vllm_fastmtp.options import FastMTPConfigError, split_speculative_config


def _engine_config(model, spec):
    from vllm.engine.arg_utils import EngineArgs

    args = EngineArgs(model=str(model), speculative_config=spec, dtype="float32", enforce_eager=True,
                      max_model_len=256, distributed_executor_backend="uni")
    return args.create_engine_config()


def test_entry_point_is_registered():
    names = {ep.name: ep.value for ep in entry_points(group="vllm.general_plugins")}
    assert names.get("fastmtp") == "vllm_fastmtp:register"


def test_fastmtp_maps_onto_mtp_and_carries_options(tiny_random_mimo):
    from vllm_fastmtp.integration.config import fastmtp_options

    config = _engine_config(tiny_random_mimo, {"method": "fastmtp"})
    spec = config.speculative_config
    assert spec.method == "mtp"
    assert spec.num_speculative_tokens == 3  # FastMTP's default K, not vLLM's n_predict
    opts = fastmtp_options(config)
    assert opts.num_speculative_tokens == 3
    assert opts.hidden_state == "post_norm"  # no record in the checkpoint -> FastMTP's convention
    assert opts.draft_vocab is None
    assert opts.tokenizer == str(tiny_random_mimo)
    # the options ride on the draft hf_config as a plain record: transformers can still serialise that config
    assert '"num_speculative_tokens": 3' in spec.draft_model_config.hf_config.to_json_string()
    assert "fastmtp" in repr(spec.draft_model_config) or repr(spec.draft_model_config)
    # Vanilla MTP stays vanilla: no FastMTP options on its config.
    assert fastmtp_options(_engine_config(tiny_random_mimo, {"method": "mtp", "num_speculative_tokens": 2})) is None


def test_checkpoint_record_and_override_of_hidden_state(tiny_random_mimo, tmp_path):
    from vllm_fastmtp.integration.config import fastmtp_options

    model = tmp_path / "m"
    shutil.copytree(tiny_random_mimo, model)
    cfg = json.loads((model / "config.json").read_text())
    cfg["fastmtp"] = {"hidden_state": "pre_norm"}
    (model / "config.json").write_text(json.dumps(cfg))
    assert fastmtp_options(_engine_config(model, {"method": "fastmtp"})).hidden_state == "pre_norm"
    over = _engine_config(model, {"method": "fastmtp", "hidden_state": "post_norm", "num_speculative_tokens": 5})
    assert fastmtp_options(over).hidden_state == "post_norm"
    assert over.speculative_config.num_speculative_tokens == 5


@pytest.mark.parametrize("k", [0, 8, -1, "3", 2.5])
def test_k_out_of_range(tiny_random_mimo, k):
    with pytest.raises(FastMTPConfigError, match="num_speculative_tokens must be an integer in 1..7"):
        _engine_config(tiny_random_mimo, {"method": "fastmtp", "num_speculative_tokens": k})


def test_unknown_keys(tiny_random_mimo):
    with pytest.raises(FastMTPConfigError, match=r"unknown key\(s\) \['draft_vocabulary'\]"):
        _engine_config(tiny_random_mimo, {"method": "fastmtp", "draft_vocabulary": {}})
    with pytest.raises(ValueError, match=r"draft_vocab: unknown keys \['map'\]"):
        _engine_config(tiny_random_mimo, {"method": "fastmtp", "draft_vocab": {"map": {}}})
    with pytest.raises(FastMTPConfigError, match="hidden_state must be one of"):
        _engine_config(tiny_random_mimo, {"method": "fastmtp", "hidden_state": "normed"})


def test_model_without_mtp_layer(tiny_random_mimo, tmp_path):
    plain = tmp_path / "plain_qwen2"
    shutil.copytree(tiny_random_mimo, plain)
    cfg = json.loads((plain / "config.json").read_text())
    cfg["architectures"] = ["Qwen2ForCausalLM"]
    cfg.pop("num_nextn_predict_layers")
    (plain / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(FastMTPConfigError, match=r"architectures \['Qwen2ForCausalLM'\].*training.graft"):
        _engine_config(plain, {"method": "fastmtp"})

    # Declares an MTP layer but ships no weights for it.
    no_weights = tmp_path / "no_mtp_weights"
    shutil.copytree(tiny_random_mimo, no_weights)
    tensors = load_file(str(no_weights / "model.safetensors"))
    save_file({k: v for k, v in tensors.items() if "mtp_layers" not in k}, str(no_weights / "model.safetensors"))
    with pytest.raises(FastMTPConfigError, match="no tensors named model.mtp_layers.0"):
        _engine_config(no_weights, {"method": "fastmtp"})


def test_unsupported_vllm_version_is_refused(tiny_random_mimo, monkeypatch):
    """Simulated: the installed vLLM reports a version whose internals were not checked."""
    import vllm

    from vllm_fastmtp.integration.version import UnsupportedVLLMError, check_vllm_version

    monkeypatch.setattr(vllm, "__version__", "0.31.2")
    with pytest.raises(UnsupportedVLLMError, match=r"supports vLLM >=0.32.0,<0.34.*installed vLLM is 0.31.2"):
        _engine_config(tiny_random_mimo, {"method": "fastmtp"})
    assert check_vllm_version("0.32.0+cpu") == "0.32.0+cpu"
    assert check_vllm_version("0.33.1") == "0.33.1"
    with pytest.raises(UnsupportedVLLMError):
        check_vllm_version("0.34.0")


def test_missing_internal_is_named():
    from vllm_fastmtp.integration.runner_v1 import patch_v1_runner
    from vllm_fastmtp.integration.version import UnsupportedVLLMError

    class FakeRunnerModule:  # a runner module from a vLLM without the symbol fastmtp replaces
        __name__ = "vllm.v1.worker.gpu_model_runner"

    with pytest.raises(UnsupportedVLLMError, match="has no vllm.v1.worker.gpu_model_runner.EagleProposer"):
        patch_v1_runner(FakeRunnerModule())


def test_v1_runner_uses_fastmtp_proposer():
    import vllm.v1.worker.gpu_model_runner as runner

    import vllm_fastmtp

    vllm_fastmtp.register()
    assert runner.EagleProposer.__name__ == "FastMTPProposer"
    from vllm.v1.spec_decode.eagle import EagleProposer

    assert issubclass(runner.EagleProposer, EagleProposer)


def test_model_runner_v2_is_refused_clearly(monkeypatch):
    """Model Runner V2 is GPU-only (needs Triton/CUDA): its speculator factory cannot run on this CPU, so this
    test calls the guard vLLM's V2 runner would call, with a stand-in config object (the only mock here)."""
    from vllm_fastmtp.options import HF_CONFIG_ATTR, FastMTPOptions
    from vllm_fastmtp.integration.config import select_v1_runner
    from vllm_fastmtp.integration.runner_v2 import refuse_v2

    calls = []
    guarded = refuse_v2(lambda cfg, *a, **k: calls.append(cfg) or "speculator")

    class Obj:
        pass

    cfg = Obj()
    cfg.speculative_config = Obj()
    cfg.speculative_config.draft_model_config = Obj()
    cfg.speculative_config.draft_model_config.hf_config = Obj()
    assert guarded(cfg, "device", "req_states") == "speculator"  # not fastmtp: untouched
    setattr(cfg.speculative_config.draft_model_config.hf_config, HF_CONFIG_ATTR, FastMTPOptions().to_record())
    with pytest.raises(FastMTPConfigError, match="not implemented for vLLM's Model Runner V2"):
        guarded(cfg, "device", "req_states")
    assert len(calls) == 1

    monkeypatch.setenv("VLLM_USE_V2_MODEL_RUNNER", "1")
    with pytest.raises(FastMTPConfigError, match="VLLM_USE_V2_MODEL_RUNNER=1"):
        select_v1_runner()
    monkeypatch.delenv("VLLM_USE_V2_MODEL_RUNNER")
    select_v1_runner()
    import os

    assert os.environ["VLLM_USE_V2_MODEL_RUNNER"] == "0"


def test_split_options_unit():
    vllm_keys = {"method", "num_speculative_tokens", "model", "draft_sample_method"}
    d, o = split_speculative_config({"method": "fastmtp"}, vllm_keys)
    assert d == {"method": "fastmtp", "num_speculative_tokens": 3} and o.draft_vocab is None
    d, o = split_speculative_config(
        {"method": "fastmtp", "num-speculative-tokens": 7,
         "draft_vocab": {"maps": {"en": "a.pt", "zh": "b.pt"}, "zh_threshold": 0.3}}, vllm_keys)
    assert d["num_speculative_tokens"] == 7 and o.draft_vocab.default == "en" and o.draft_vocab.zh_threshold == 0.3
    with pytest.raises(ValueError, match="draft_vocab.default 'fr' is not one of the maps"):
        split_speculative_config({"draft_vocab": {"maps": {"en": "a.pt"}, "default": "fr"}}, vllm_keys)
    with pytest.raises(FastMTPConfigError, match="must be omitted"):
        split_speculative_config({"model": "other/draft"}, vllm_keys)
    with pytest.raises(FastMTPConfigError, match="draft_sample_method 'greedy'"):
        split_speculative_config({"draft_vocab": {"maps": {"en": "a.pt"}}, "draft_sample_method": "probabilistic"},
                                 vllm_keys)
    assert split_speculative_config({"draft_vocab": None}, vllm_keys)[1].draft_vocab is None
    assert split_speculative_config({}, vllm_keys)[1].prompt_lookup is None
    assert split_speculative_config({"prompt_lookup": "agree"}, vllm_keys)[1].prompt_lookup == "agree"
    with pytest.raises(FastMTPConfigError, match=r"prompt_lookup must be one of \('agree', 'prefer'\)"):
        split_speculative_config({"prompt_lookup": True}, vllm_keys)
    with pytest.raises(FastMTPConfigError, match="prompt_lookup needs draft_sample_method 'greedy'"):
        split_speculative_config({"prompt_lookup": "prefer", "draft_sample_method": "probabilistic"}, vllm_keys)
    assert split_speculative_config({}, vllm_keys)[1].cpu_c_kernels is True
    assert split_speculative_config({"cpu_c_kernels": False}, vllm_keys)[1].cpu_c_kernels is False
    with pytest.raises(FastMTPConfigError, match="cpu_c_kernels must be true .* or false .*, got 'no'"):
        split_speculative_config({"cpu_c_kernels": "no"}, vllm_keys)
    # What the workers receive: frozen, and whole after the pickling that carries it to every process.
    assert pickle.loads(pickle.dumps(o)) == o
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.hidden_state = "pre_norm"


def test_bad_vocab_maps_fail_at_config_time(tiny_random_mimo, tmp_path):
    """Checked while the engine config is built, before any engine process: the file is named."""
    import torch

    from vocab_maps.format import VocabMapError

    too_big = tmp_path / "too_big.pt"
    torch.save([1, 2, 9999], too_big)
    with pytest.raises(VocabMapError, match=r"too_big.pt.*9999"):
        _engine_config(tiny_random_mimo, {"method": "fastmtp", "draft_vocab": {"maps": {"en": str(too_big)}}})
    dup = tmp_path / "dup.pt"
    torch.save([5, 6, 5], dup)
    with pytest.raises(VocabMapError, match="dup.pt"):
        _engine_config(tiny_random_mimo, {"method": "fastmtp", "draft_vocab": {"maps": {"en": str(dup)}}})
    with pytest.raises(VocabMapError, match="qwen2-en-32k"):  # a shipped map built for another tokenizer
        _engine_config(tiny_random_mimo, {"method": "fastmtp", "draft_vocab": {"maps": {"en": "qwen2-en-32k"}}})
    good = tmp_path / "good.pt"
    torch.save(list(range(200)), good)
    from vllm_fastmtp.integration.config import fastmtp_options

    opts = fastmtp_options(_engine_config(tiny_random_mimo, {"method": "fastmtp", "draft_vocab": {"maps": {"en": str(good)}}}))
    assert opts.draft_vocab.maps == {"en": str(good.resolve())}

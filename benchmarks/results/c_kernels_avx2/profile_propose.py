"""Ad-hoc (README, "Why"): op-level breakdown of FastMTPProposer.propose in a live in-process engine.
Run from the repository root: VLLM_CPU_NUM_OF_RESERVED_CPU=0 VLLM_CPU_KVCACHE_SPACE=4 python THIS"""
import os, sys, time, collections
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
import torch
from vllm import LLM, SamplingParams
import vllm_fastmtp.integration.proposer as P

label = sys.argv[1] if len(sys.argv) > 1 else "x"
orig = P.FastMTPProposer.propose
def wrapped(self, *a, **k):
    with torch.autograd.profiler.record_function("PROPOSE"):
        return orig(self, *a, **k)
P.FastMTPProposer.propose = wrapped

maps = {"en": "vocab_maps/smollm2-en-8k.pt", "zh": "vocab_maps/smollm2-zh-8k.pt"}
llm = LLM("runs/pipeline/ft/final", dtype="float32", enforce_eager=True, max_model_len=2048, seed=0,
          speculative_config={"method": "fastmtp", "num_speculative_tokens": 3, "draft_vocab": {"maps": maps}})
prompts = ["Write a short story about a robot learning to paint.", "Explain how a hash map works, with an example in Python.",
           "What is 17 times 23? Show your steps."]
sp = SamplingParams(temperature=0, max_tokens=96, ignore_eos=True)
llm.generate(prompts[:1], SamplingParams(temperature=0, max_tokens=16, ignore_eos=True))  # warm
with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
    t = time.perf_counter(); out = [llm.generate([p], sp)[0] for p in prompts]; dt = time.perf_counter() - t
print("gen s", dt, sum(len(o.outputs[0].token_ids) for o in out))
evs = prof.events()
props = [e for e in evs if e.name == "PROPOSE"]
print("propose calls", len(props), "mean ms", sum(e.cpu_time_total for e in props) / len(props) / 1000)
agg = collections.Counter(); cnt = collections.Counter()
def walk(e):
    for c in e.cpu_children:
        agg[c.name] += c.self_cpu_time_total; cnt[c.name] += 1
        walk(c)
for e in props: walk(e)
n = len(props)
for name, us in agg.most_common(45):
    print(f"{us / n / 1000:8.3f} ms/call  {cnt[name] / n:6.1f}/call  {name}")
seen = set()
def find(e, target, path):
    for c in e.cpu_children:
        if c.name in target and c.name not in seen:
            seen.add(c.name); print(c.name, "<-", " < ".join(reversed(path[-6:])))
            if c.stack: print("   stack:", " | ".join(c.stack[:8]))
        find(c, target, path + [c.name])
for e in props[5:6]:
    find(e, {"aten::pow", "aten::div_", "aten::sum", "aten::where", "aten::index", "aten::argmax", "aten::item", "aten::cat"}, ["PROPOSE"])
from vllm_fastmtp import stats
print("DRAFTER", stats.DRAFTER)

"""One engine of a step-cost profile, in its own process (``benchmarks.step_profile`` drives it): batch 1, greedy,
eager, on CPU, with ``vllm_fastmtp.integration.profiling`` timers around the pieces of every engine step.

Warm-up requests run first and the timers are reset after them. Reads a job JSON, writes a result JSON.
"""

from __future__ import annotations

import os
import sys
import time

from benchmarks.engine_run import WARMUP_PROMPT, job_main
from benchmarks.spec_metrics import delta, snapshot


def run_job(job: dict) -> dict:
    import torch
    import vllm
    from vllm import LLM, SamplingParams

    from vllm_fastmtp.integration.profiling import install_step_profiler

    kwargs = dict(model=job["model"], speculative_config=job["speculative_config"], enforce_eager=True,
                  disable_log_stats=False, max_num_seqs=1, seed=0, distributed_executor_backend="uni")
    kwargs.update(job.get("engine_args") or {})
    llm = LLM(**kwargs)
    profiler = install_step_profiler(llm)
    warm = SamplingParams(temperature=0.0, max_tokens=min(job["max_new_tokens"], 32))
    for _ in range(2):
        llm.chat([{"role": "user", "content": WARMUP_PROMPT}], warm, use_tqdm=False)
    profiler.reset()

    sp = SamplingParams(temperature=0.0, max_tokens=job["max_new_tokens"])
    before = snapshot(llm)
    wall, tokens, requests = 0.0, 0, 0
    for q in job["questions"]:
        messages: list[dict] = []
        for turn in q["turns"]:
            messages.append({"role": "user", "content": turn})
            t = time.perf_counter()
            out = llm.chat(messages, sp, use_tqdm=False)[0].outputs[0]
            wall += time.perf_counter() - t
            tokens += len(out.token_ids)
            requests += 1
            messages.append({"role": "assistant", "content": out.text})
    return {"profile": profiler.summary(), "wall_s": wall, "output_tokens": tokens, "requests": requests,
            **delta(snapshot(llm), before), "vllm_version": vllm.__version__,
            "device": "cpu" if not torch.cuda.is_available() else torch.cuda.get_device_name(0),
            "threads": torch.get_num_threads()}


if __name__ == "__main__":
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    sys.exit(job_main(run_job, "benchmarks.step_profile_engine"))

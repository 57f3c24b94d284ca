"""One engine under load, in its own process (``benchmarks.concurrency`` drives it): for each concurrency level C,
a closed loop keeps C requests in flight (a new one starts when one finishes) until the level's requests are done.

Per request: time to first token, finish time and output ids; per level: wall time, output tokens, and the
speculative counters' delta (``benchmarks.spec_metrics``). Reads a job JSON, writes a result JSON.
"""

from __future__ import annotations

import os
import sys
import time

from benchmarks.engine_run import WARMUP_PROMPT, job_main
from benchmarks.spec_metrics import delta, snapshot


def run_level(llm, prompts: list[list[int]], concurrency: int, n_requests: int, sp) -> dict:
    from vllm.inputs import TokensPrompt

    engine = llm.llm_engine
    pending = list(range(n_requests))
    started: dict[str, tuple[int, float]] = {}
    first: dict[str, float] = {}
    done: dict[int, dict] = {}
    before = snapshot(llm)
    t0 = time.perf_counter()

    def submit() -> None:
        i = pending.pop(0)
        rid = f"load-{concurrency}-{i}"  # outputs carry this id (add_request returns the engine's internal one)
        engine.add_request(rid, TokensPrompt(prompt_token_ids=prompts[i % len(prompts)]), sp)
        started[rid] = (i, time.perf_counter())

    while pending and len(started) < concurrency:
        submit()
    while started:
        if not engine.has_unfinished_requests():
            raise RuntimeError(f"engine idle with {len(started)} request(s) never reported finished: {sorted(started)[:4]}")
        for out in engine.step():
            now = time.perf_counter()
            if out.request_id not in started:
                continue
            if out.request_id not in first and out.outputs and out.outputs[0].token_ids:
                first[out.request_id] = now
            if out.finished:
                i, t_start = started.pop(out.request_id)
                ids = list(out.outputs[0].token_ids)
                done[i] = {"prompt": i % len(prompts), "start_s": t_start - t0, "ttft_s": first.get(out.request_id, now) - t_start,
                           "latency_s": now - t_start, "output_tokens": len(ids), "ids": ids}
                if pending:
                    submit()
    wall = time.perf_counter() - t0
    return {"concurrency": concurrency, "wall_s": wall, "requests": [done[i] for i in sorted(done)],
            "output_tokens": sum(r["output_tokens"] for r in done.values()), **delta(snapshot(llm), before)}


def run_job(job: dict) -> dict:
    import torch
    from vllm import LLM, SamplingParams

    levels = job["levels"]
    kwargs = dict(model=job["model"], speculative_config=job["speculative_config"], enforce_eager=True,
                  disable_log_stats=False, max_num_seqs=max(levels), seed=0)
    if not torch.cuda.is_available():
        kwargs["distributed_executor_backend"] = "uni"
    kwargs.update(job.get("engine_args") or {})
    llm = LLM(**kwargs)
    tok = llm.get_tokenizer()
    prompts = [tok.encode(tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True,
                                                  tokenize=False), add_special_tokens=False) for p in job["prompts"]]
    sp = SamplingParams(temperature=0.0, max_tokens=job["max_new_tokens"])
    llm.chat([{"role": "user", "content": WARMUP_PROMPT}], SamplingParams(temperature=0.0, max_tokens=16), use_tqdm=False)
    run_level(llm, prompts, min(4, max(levels)), min(4, max(levels)), sp)  # warm-up of the batched shapes
    out = [run_level(llm, prompts, c, max(c * job["waves"], job["min_requests"]), sp) for c in levels]
    import vllm

    return {"vllm_version": vllm.__version__, "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
            "levels": out}


if __name__ == "__main__":
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    sys.exit(job_main(run_job, "benchmarks.load_engine"))

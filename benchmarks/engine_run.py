"""One engine configuration of a benchmark run, in its own process (a second vLLM engine in one process does
not start cleanly). Reads a job JSON, writes a result JSON; ``benchmarks.run`` drives it.

Batch 1: questions are sent one at a time, turns in order (turn n sees the model's own earlier answers).
Per-category speculative-decoding counters are deltas of ``llm.get_metrics()`` taken around each category, and
per turn around each request (outside the timed call): MT-Bench's second turns follow a capped first answer.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Callable

from benchmarks.spec_metrics import add_counts, delta, snapshot
from training.files import atomic_write

WARMUP_PROMPT = "Say hello."


def run_job(job: dict) -> dict:
    import torch
    from vllm import LLM, SamplingParams

    eager = job.get("enforce_eager")
    if eager is None:  # compiled graphs are what one measures on a GPU; on CPU eager is exact and starts fast
        eager = not torch.cuda.is_available()
    kwargs = dict(
        model=job["model"],
        speculative_config=job["speculative_config"],
        enforce_eager=eager,
        disable_log_stats=False,
        max_num_seqs=1,
        seed=job.get("seed", 0),
    )
    if not torch.cuda.is_available():
        kwargs["distributed_executor_backend"] = "uni"
    kwargs.update(job.get("engine_args") or {})
    t0 = time.perf_counter()
    llm = LLM(**kwargs)
    start_s = time.perf_counter() - t0
    sp = SamplingParams(temperature=0.0, max_tokens=job["max_new_tokens"])
    # Warm-up (excluded from timing and, via metric deltas, from acceptance): first-call costs are not speed.
    warm = SamplingParams(temperature=0.0, max_tokens=min(job["max_new_tokens"], 32))
    for _ in range(2):
        llm.chat([{"role": "user", "content": WARMUP_PROMPT}], warm, use_tqdm=False)

    categories = {}
    for cat, questions in job["categories"].items():
        before = last = snapshot(llm)
        wall = 0.0
        n_tokens = 0
        request_s: list[float] = []
        outputs: dict[str, list[list[int]]] = {}
        per_turn: list[dict] = []
        for q in questions:
            messages: list[dict] = []
            outputs[q["question_id"]] = []
            for n, turn in enumerate(q["turns"]):
                messages.append({"role": "user", "content": turn})
                t = time.perf_counter()
                out = llm.chat(messages, sp, use_tqdm=False)[0].outputs[0]
                request_s.append(time.perf_counter() - t)
                wall += request_s[-1]
                n_tokens += len(out.token_ids)
                now = snapshot(llm)  # nothing runs between requests: this one's end is the next one's start
                if n == len(per_turn):
                    per_turn.append({})
                add_counts(per_turn[n], {"wall_s": request_s[-1], "output_tokens": len(out.token_ids), "requests": 1,
                                         **delta(now, last)})
                last = now
                outputs[q["question_id"]].append(list(out.token_ids))
                messages.append({"role": "assistant", "content": out.text})
        categories[cat] = {"wall_s": wall, "output_tokens": n_tokens, "requests": len(request_s),
                           "request_wall_s": request_s,
                           **delta(last, before), "per_turn": per_turn, "outputs": outputs}
    import vllm

    return {"engine_start_s": start_s, "enforce_eager": kwargs["enforce_eager"], "vllm_version": vllm.__version__,
            "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
            "categories": categories}


def job_main(run: Callable[[dict], dict], prog: str) -> int:
    """``python -m PROG JOB.json RESULT.json``: the result file appears whole or not at all (the driver reads
    its absence as a failed engine)."""
    if len(sys.argv) != 3:
        print(f"usage: python -m {prog} JOB.json RESULT.json", file=sys.stderr)
        return 2
    atomic_write(sys.argv[2], json.dumps(run(json.loads(Path(sys.argv[1]).read_text()))))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    sys.exit(job_main(run_job, "benchmarks.engine_run"))

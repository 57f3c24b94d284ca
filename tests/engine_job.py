"""Run one real vLLM engine configuration in a fresh process and write what it produced as JSON.

Tests start one engine per configuration through this script: several vLLM engines in one process do not shut
down cleanly on CPU, and a subprocess also gives each engine the plugin loading of a real deployment.

Job JSON: {"model", "speculative_config" (or null), "prompts": [str] or "prompt_token_ids": [[int]],
"max_tokens", "batch_sizes": [int] (prompts are submitted in groups of that size), "temperature",
"ignore_eos", "max_model_len", "n", "seed", "env": {...}}.
Result JSON: {"outputs": {batch_size: [[token ids] per prompt (per sample when n > 1)]},
"metrics": {batch_size: {"drafts", "draft_tokens", "accepted", "accepted_per_pos"}},
"request_language": {...}, "map_rows": {...}, "drafts": [[req_id, [ids]]], "start_s"}.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path


def spec_metrics(llm) -> dict:
    out = {"drafts": 0, "draft_tokens": 0, "accepted": 0, "accepted_per_pos": []}
    for m in llm.get_metrics():
        if m.name == "vllm:spec_decode_num_drafts":
            out["drafts"] = m.value
        elif m.name == "vllm:spec_decode_num_draft_tokens":
            out["draft_tokens"] = m.value
        elif m.name == "vllm:spec_decode_num_accepted_tokens":
            out["accepted"] = m.value
        elif m.name == "vllm:spec_decode_num_accepted_tokens_per_pos":
            out["accepted_per_pos"] = list(m.values)
    return out


def _delta(after: dict, before: dict) -> dict:
    per_pos = after["accepted_per_pos"]
    prev = before["accepted_per_pos"] or [0] * len(per_pos)
    return {
        "drafts": after["drafts"] - before["drafts"],
        "draft_tokens": after["draft_tokens"] - before["draft_tokens"],
        "accepted": after["accepted"] - before["accepted"],
        "accepted_per_pos": [a - b for a, b in zip(per_pos, prev)],
    }


def main(job_path: str, result_path: str) -> None:
    job = json.loads(Path(job_path).read_text())
    from vllm import LLM, SamplingParams

    from vllm_fastmtp import stats

    t0 = time.time()
    llm = LLM(
        model=job["model"],
        speculative_config=job.get("speculative_config"),
        distributed_executor_backend="uni",
        enforce_eager=True,
        dtype=job.get("dtype", "float32"),
        max_model_len=job.get("max_model_len", 512),
        max_num_seqs=max(job.get("batch_sizes", [16])),
        disable_log_stats=False,
        seed=job.get("seed", 0),
    )
    start_s = time.time() - t0
    params = SamplingParams(
        temperature=job.get("temperature", 0.0),
        max_tokens=job["max_tokens"],
        ignore_eos=job.get("ignore_eos", True),
        n=job.get("n", 1),
        seed=job.get("sampling_seed"),
        top_k=job.get("top_k", 0),
        detokenize=job.get("detokenize", True),
    )
    if "prompt_token_ids" in job:
        prompts = [{"prompt_token_ids": ids} for ids in job["prompt_token_ids"]]
    else:
        prompts = job["prompts"]
    outputs, metrics, request_ids = {}, {}, {}
    for bs in job.get("batch_sizes", [16]):
        before = spec_metrics(llm)
        got, ids = [], []
        for i in range(0, len(prompts), bs):
            for r in llm.generate(prompts[i : i + bs], params, use_tqdm=False):
                got.append([list(c.token_ids) for c in r.outputs] if params.n > 1 else list(r.outputs[0].token_ids))
                ids.append(r.request_id)
        outputs[str(bs)] = got
        request_ids[str(bs)] = ids
        metrics[str(bs)] = _delta(spec_metrics(llm), before)
    Path(result_path).write_text(
        json.dumps(
            {
                "outputs": outputs,
                "request_ids": request_ids,
                "metrics": metrics,
                "request_language": dict(stats.REQUEST_LANGUAGE),
                "map_rows": dict(stats.MAP_ROWS),
                "drafts": [[r, d] for r, d in stats.DRAFTS],
                "start_s": start_s,
            }
        )
    )


def run_job(job: dict, tmp_path: Path, name: str, timeout: float = 600) -> dict:
    """Run a job in a fresh interpreter; raise with its log tail if it fails."""
    job_path, result_path = tmp_path / f"{name}.job.json", tmp_path / f"{name}.result.json"
    job_path.write_text(json.dumps(job))
    env = dict(os.environ)
    env.update({"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_KVCACHE_SPACE": "1"})
    env.update(job.get("env", {}))
    proc = subprocess.run(
        [sys.executable, "-m", "tests.engine_job", str(job_path), str(result_path)],
        cwd=Path(__file__).resolve().parent.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"engine job {name} failed (rc={proc.returncode}):\n{proc.stderr[-6000:]}")
    return json.loads(result_path.read_text())


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

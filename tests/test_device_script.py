"""scripts/device.sh, the path to a lent GPU, run here for real on CPU: slim/restore in a clone of this checkout,
and pack -> stash -> stash -> train end to end with a tiny MiMo checkpoint (MODEL) and a stand-in GGUF (only split,
hashed and reassembled: MODEL skips the demo model's conversion). No GPU is needed or mocked: the script's GPU use
is training.cache_states / training.finetune picking CUDA when torch sees it."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "device.sh"


def sh(args, cwd, env=None, check=True) -> subprocess.CompletedProcess:
    res = subprocess.run(["bash", *args], cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True,
                         text=True, timeout=600)
    if check and res.returncode:
        raise AssertionError(f"{args} rc {res.returncode}\n{res.stdout}\n{res.stderr}")
    return res


def git(cwd, *args) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout


@pytest.fixture
def clone(tmp_path):
    """This checkout's HEAD with the working tree's device.sh and offline_heads.sh committed on top."""
    if subprocess.run(["git", "-C", str(REPO), "rev-parse"], capture_output=True).returncode:
        pytest.skip("not a git checkout: slim and restore work on one")
    d = tmp_path / "repo"
    subprocess.run(["git", "clone", "-q", str(REPO), str(d)], check=True)
    rels = ("scripts/device.sh", "benchmarks/results/offline_heads.sh", ".gitignore")
    for rel in rels:
        shutil.copy(REPO / rel, d / rel)
    git(d, "add", *rels)
    git(d, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "device.sh under test", "--allow-empty")
    return d


def test_slim_keeps_what_the_device_runs_and_restore_brings_back_the_rest(clone):
    before = git(clone, "ls-files").splitlines()
    out = sh(["scripts/device.sh", "slim"], clone).stdout
    tracked = git(clone, "ls-files").splitlines()
    on_disk = [p for p in before if (clone / p).exists()]
    assert sorted(tracked) == sorted(on_disk)  # what is listed is what is there: however the tool lists, the same
    assert not any(p.startswith(("data/", "tests/", "docs/")) for p in tracked)
    assert [p for p in tracked if p.startswith("benchmarks/results/")] == ["benchmarks/results/offline_heads.sh"]
    for needed in ("scripts/device.sh", "training/finetune.py", "training/cache_states.py", "benchmarks/demo_model.py",
                   "benchmarks/demo_head/smollm2-135m-fastmtp-k3.safetensors", "vocab_maps/smollm2-en-8k.pt",
                   "vocab_maps/smollm2-zh-8k.pt", "vllm_fastmtp/conventions.py"):
        assert needed in tracked, needed
    size = sum((clone / p).stat().st_size for p in tracked)
    assert size < 16e6, size  # leaves room for a 33 MB part + the 8 MB kit under the tool's 64 MiB
    assert "MB tracked" in out
    again = sh(["scripts/device.sh", "slim"], clone, check=False)
    assert again.returncode == 2 and "already slim" in again.stderr
    sh(["scripts/device.sh", "restore"], clone)
    assert git(clone, "status", "--porcelain") == ""
    assert git(clone, "ls-files").splitlines() == before
    nothing = sh(["scripts/device.sh", "restore"], clone, check=False)
    assert nothing.returncode == 2 and "nothing to restore" in nothing.stderr


def test_slim_refuses_uncommitted_changes_and_deletes_nothing(clone):
    readme = clone / "README.md"
    text = readme.read_text()
    readme.write_text(text + "\nlocal edit\n")
    try:
        res = sh(["scripts/device.sh", "slim"], clone, check=False)
        assert res.returncode == 2 and "uncommitted changes" in res.stderr
        assert (clone / "benchmarks/results/README.md").is_file() and readme.read_text().endswith("local edit\n")
    finally:
        readme.write_text(text)


def _chats(path: Path, n: int, seed: int) -> None:
    """training.distill-shaped records (ids PROMPT_FILE:LINE:HASH, what training.chunk_sets splits by)."""
    rng = random.Random(seed)
    letters = "abcdefghij klmnop"
    with open(path, "w") as f:
        for i in range(n):
            msgs = [{"role": "user", "content": "".join(rng.choice(letters) for _ in range(12))},
                    {"role": "assistant", "content": "".join(rng.choice(letters) for _ in range(40))}]
            rec = {"id": f"self.jsonl:{seed * 1000 + i + 1}:h{i}", "category": "general", "messages": msgs}
            f.write(json.dumps(rec) + "\n")


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    d = tmp_path_factory.mktemp("pack")
    src = d / "src"
    src.mkdir()
    _chats(src / "train.jsonl", 12, 0)
    _chats(src / "eval.jsonl", 6, 1)
    gguf = d / "model.gguf"
    gguf.write_bytes(os.urandom(100_003))  # a stand-in: pack and train only split, hash and join it
    env = {"KIT": str(d / "kit"), "SRC": str(src), "WHEELS": "0", "PY": sys.executable, "FASTMTP_DEMO_GGUF": str(gguf)}
    sh(["scripts/device.sh", "pack"], REPO, env)
    return d


def _calls(packed: Path, tmp: Path, parts=(0, 1, 2)) -> dict:
    """The device calls' carried folders: one part each, the kit with the last; returns the train call's env."""
    stash = tmp / "stash"
    for i in parts[:-1]:
        call = tmp / f"call{i}"
        call.mkdir(parents=True)
        shutil.copy(packed / "kit" / f"part-{i}", call)
        sh(["scripts/device.sh", "stash"], REPO, {"KIT": str(call), "STASH": str(stash)})
    last = tmp / "call-last"
    last.mkdir(parents=True)
    shutil.copy(packed / "kit" / f"part-{parts[-1]}", last)
    shutil.copytree(packed / "kit" / "kit", last / "kit")
    return {"KIT": str(last), "STASH": str(stash), "OUT": str(tmp / "out"), "R": str(tmp / "run"),
            "PY": sys.executable}


def test_pack_splits_the_model_and_packs_the_chunks(packed):
    kit = packed / "kit"
    parts = sorted(kit.glob("part-*"))
    assert [p.name for p in parts] == ["part-0", "part-1", "part-2"]
    assert b"".join(p.read_bytes() for p in parts) == (packed / "model.gguf").read_bytes()
    listed = subprocess.run(["tar", "-tJf", str(kit / "kit" / "chunks.tar.xz")], capture_output=True, text=True,
                            check=True).stdout.split()
    assert {"train-self-chunk0.jsonl", "eval-self.jsonl", "eval.jsonl", "eval-first105.jsonl"} <= set(listed)


def test_train_runs_caches_finetune_and_offline_acceptance(packed, tiny_random_mimo, tmp_path):
    env = _calls(packed, tmp_path)
    env.update(MODEL=str(tiny_random_mimo), MAPS="", EVALS="self", MAX_STEPS="2", BATCH="2", BATCH_TOKENS="512")
    sh(["scripts/device.sh", "train"], REPO, env)
    out = Path(env["OUT"])
    assert sorted(p.name for p in out.iterdir()) == ["device.log", "finetune_result.json", "mtp_head.safetensors",
                                                    "offline.txt", "train.log"]
    res = json.loads((out / "finetune_result.json").read_text())
    assert (res["steps"], res["planned_steps"], res["stopped_by_time"]) == (2, 2, False)
    rows = [line.split() for line in (out / "offline.txt").read_text().splitlines()]
    assert [r[:2] for r in rows] == [["start", "self"], ["new", "self"]]
    assert all(0 <= float(x) <= 100 for r in rows for x in r[2:]) and all(len(r) == 5 for r in rows)
    assert "caches: 1 train chunks, 1 eval sets" in (out / "device.log").read_text()


def test_train_refuses_missing_or_corrupt_parts_before_any_work(packed, tmp_path):
    env = _calls(packed, tmp_path / "a", parts=(0, 2))  # part-1 never stashed
    res = sh(["scripts/device.sh", "train"], REPO, env, check=False)
    assert res.returncode == 2 and "2 of 3 GGUF parts" in res.stderr
    assert not Path(env["R"]).joinpath("cache").exists()
    env = _calls(packed, tmp_path / "b")
    part = Path(env["STASH"]) / "part-0"
    part.write_bytes(part.read_bytes()[:-1])  # truncated in transit
    res = sh(["scripts/device.sh", "train"], REPO, env, check=False)
    assert res.returncode == 2 and "sha256 differs" in res.stderr
    assert not Path(env["R"]).joinpath("cache").exists()

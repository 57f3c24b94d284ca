"""A tiny model trained on its own greedy generations: offline acceptance rises well above the untrained head's."""

import json

import torch

from training.finetune import parse_args, run
from tests.fixtures.tiny_demo import build_demo_model, self_generate

torch.set_num_threads(1)


def test_acceptance_rises_on_own_generations(tmp_path):
    model = build_demo_model(tmp_path / "model", seed=0, std=0.1)
    rows = self_generate(model, 176, max_new_tokens=32, seed=1)
    for name, part in (("train", rows[:144]), ("eval", rows[144:])):
        with open(tmp_path / f"{name}.jsonl", "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in part)
    out = tmp_path / "run"
    res = run(*parse_args([
        "--model_path", str(model), "--train_file", str(tmp_path / "train.jsonl"),
        "--eval_file", str(tmp_path / "eval.jsonl"), "--output_dir", str(out),
        "--max_steps", "120", "--num_train_epochs", "100", "--learning_rate", "3e-3",
        "--per_device_train_batch_size", "16", "--per_device_eval_batch_size", "16",
        "--eval_strategy", "steps", "--eval_steps", "120", "--eval_on_start", "true",
        "--save_strategy", "no", "--export", "head", "--logging_steps", "20",
        "--use_cpu", "true", "--disable_tqdm", "true", "--seed", "0",
    ]))
    history = res["eval_history"]  # first entry: eval_on_start, the untrained head
    assert [h["step"] for h in history][0] == 0
    before, after = history[0], history[-1]
    print("before", before, "after", after)
    for k in (1, 2, 3):
        assert after[f"eval_accept_pos{k}"] >= before[f"eval_accept_pos{k}"] + 0.3, (k, before, after)
    assert after["eval_accept_pos3"] > 0.4
    assert after["eval_data_greedy_match"] > 0.95  # data are the model's own greedy output: the estimate is exact

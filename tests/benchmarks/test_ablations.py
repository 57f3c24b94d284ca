"""benchmarks.ablations builds each arm as the base recipe plus ONE change; the flags go through the real
training.finetune parser (HfArgumentParser), so a renamed finetune flag or a broken override fails here."""

from __future__ import annotations

import argparse

import pytest

from benchmarks.ablations import ARMS, _arm_args, _slug
from training.finetune import parse_args


def _args(lr: float = 3e-4) -> argparse.Namespace:
    return argparse.Namespace(model="m", train_file="t.jsonl", cache="c", eval_file="e.jsonl", eval_cache="ec",
                              eval_examples=105, maps="en.pt,zh.pt", steps=200, batch=8, learning_rate=lr,
                              work="runs/ablations")


@pytest.mark.parametrize("name", list(ARMS))
def test_every_arm_is_the_base_plus_its_own_change(name):
    fa0, ta0 = parse_args(_arm_args(_args(), next(iter(ARMS)), {}))
    fa, ta = parse_args(_arm_args(_args(), name, ARMS[name]))
    assert ta0.learning_rate == pytest.approx(3e-4) and ta0.max_steps == 200
    assert ta.output_dir.endswith(_slug(name))
    differs = {k for k, v in vars(fa).items() if getattr(fa0, k) != v}
    if ta.learning_rate != ta0.learning_rate:
        differs.add("learning_rate")
    assert differs == {"learning_rate" if k == "lr_scale" else k for k in ARMS[name]}


def test_lr_scale_multiplies_the_base_lr_and_is_not_a_finetune_flag():
    argv = _arm_args(_args(lr=2e-3), "lr / 4", ARMS["lr / 4"])
    assert "--lr_scale" not in argv
    _, ta = parse_args(argv)
    assert ta.learning_rate == pytest.approx(5e-4)

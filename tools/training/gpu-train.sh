#!/usr/bin/env bash
# Train the bundled model on one GPU, in commands that each fit a device machine's limits.
#
#   python3 tools/data/packages.py                # here, once: .train/corpus/corpus-NN.jsonl.xz, shards of ~14 MB
#   bash tools/training/gpu-train.sh stage        # on the GPU: copy the carried shards to $CORPUS_DIR
#   bash tools/training/gpu-train.sh sweep OUT    # on the GPU: stage, pack the data, SHAPES at equal budget, at once
#   bash tools/training/gpu-train.sh final OUT NAME   # on the GPU: the chosen shape, FINAL_MINUTES alone
#
# A device call carries the repository (about 51 MB) and what `carry` names,
# 64 MiB in all: one corpus shard a call. So: one `stage` call per shard but
# the first (carry .train/corpus/corpus-NN.jsonl.xz), then `sweep` carrying
# corpus-00 (which holds the standard library, the held-out split included),
# then `final`, back to back while the machine stays up ($CORPUS_DIR and the
# packed data live on there). Any first shards are a fair sample of the corpus,
# so fewer calls train on less data, not on other data.
#
# Needs python3 with torch, transformers, tokenizers and numpy; no network and no
# Debian standard library (the corpus holds it).
#
# sweep: every shape of SHAPES trains for SWEEP_MINUTES, all at once on the
#   one GPU (so each gets an equal share of it), with --budget-minutes sizing
#   its steps so that its schedule completes; OUT/sweep.md ranks them by
#   held-out loss (the standard library's held-out split, all of it).
# final: the named shape for FINAL_MINUTES; the model (bf16 safetensors in
#   files under 16 MB, which is what comes back from a device machine, config,
#   training.json) lands in OUT/model.
set -euo pipefail
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/../.."

mode=${1:?"usage: gpu-train.sh stage | sweep OUT | final OUT NAME"}
CORPUS_DIR=${CORPUS_DIR:-/tmp/sc2-corpus}
mkdir -p "$CORPUS_DIR"
shopt -s nullglob
for shard in .train/corpus/corpus-*.jsonl.xz; do cp "$shard" "$CORPUS_DIR/"; done
echo "corpus shards staged in $CORPUS_DIR: $(cd "$CORPUS_DIR" && echo corpus-*.jsonl.xz)"
[[ $mode == stage ]] && exit 0
out=${2:?"usage: gpu-train.sh stage | sweep OUT | final OUT NAME"}
mkdir -p "$out"
SWEEP_MINUTES=${SWEEP_MINUTES:-3}
FINAL_MINUTES=${FINAL_MINUTES:-6}
EPOCHS=${EPOCHS:-4}
DATA=${DATA:-.train/data-gpu.npz}  # packed once per machine: after staging more shards, remove it
DEVICE=${DEVICE:-cuda}  # DEVICE=cpu BATCH=1 with small minutes: a smoke test of the whole flow on a CPU
BATCH=${BATCH:-}
FINAL_EVAL_BLOCKS=${FINAL_EVAL_BLOCKS:-0}  # 0: the whole held-out split

# name: hidden layers heads kv_heads batch lr (intermediate 4 x hidden, window 256, context 512)
declare -A SHAPES=(
  [h256x6]="256 6 4 2 32 2.5e-3"
  [h384x8]="384 8 6 2 32 2e-3"
  [h512x6]="512 6 8 2 32 1.5e-3"
  [h384x12]="384 12 6 2 32 1.5e-3"
)

{
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
} | tee "$out/environment.txt"

if [[ ! -f $DATA ]]; then
  start=$(date +%s)
  python3 tools/data/model_data.py --corpus "$CORPUS_DIR"/corpus-*.jsonl.xz --epochs "$EPOCHS" --workers "$(nproc)" --output "$DATA" \
    | tee "$out/data.log"
  echo "data: $(( $(date +%s) - start )) s" | tee -a "$out/data.log"
fi

train() {  # name minutes output [more train_model.py options]
  read -r hidden layers heads kv batch lr <<< "${SHAPES[$1]}"
  python3 tools/training/train_model.py --device "$DEVICE" --data "$DATA" --output "$3" \
    --hidden "$hidden" --layers "$layers" --heads "$heads" --kv-heads "$kv" --batch "${BATCH:-$batch}" --lr "$lr" \
    --warmup 200 --budget-minutes "$2" --eval-every 500 --eval-blocks 64 --steps 1000000 \
    --final-eval-blocks "$FINAL_EVAL_BLOCKS" "${@:4}"
}

case $mode in
  sweep)
    for name in "${!SHAPES[@]}"; do
      train "$name" "$SWEEP_MINUTES" "$out/sweep-$name" > "$out/sweep-$name.log" 2>&1 &
    done
    wait
    {
      echo "| shape | hidden layers heads kv batch lr | parameters | steps | held-out loss |"
      echo "|---|---|---:|---:|---:|"
      for name in "${!SHAPES[@]}"; do
        python3 - "$out/sweep-$name/training.json" "$name" "${SHAPES[$name]}" <<'EOF'
import json, sys
t = json.load(open(sys.argv[1]))
print(f"| {sys.argv[2]} | {sys.argv[3]} | {t['parameters'] / 1e6:.1f} M | {t['steps_done']} | "
      f"{t['held_out_loss_training_precision']:.4f} |")
EOF
      done | sort -t'|' -k6 -n
    } | tee "$out/sweep.md"
    rm -f "$out"/sweep-*/model.safetensors  # the ranking is the product; the weights would only fill OUT
    ;;
  final)
    name=${3:?"final needs a shape name: ${!SHAPES[*]}"}
    train "$name" "$FINAL_MINUTES" "$out/model" --max-shard-size 15MB 2>&1 | tee "$out/final.log"
    ;;
  *) echo "unknown mode $mode" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# The GPU check: what a lent GPU machine (one H100, 16 cores) is asked, in one script of under
# 8 minutes, written so that it also runs on a CPU at tiny sizes (tests/scenarios/test_gpu_check.py).
#
#   bash benchmarks/gpu_check.sh --prepare          # here, beside ../shared: copy the cases
#   bash benchmarks/gpu_check.sh                    # on the GPU machine (the repository only)
#   bash benchmarks/gpu_check.sh --tiny             # a CPU smoke run of every step, tiny sizes
#
# --prepare copies GPU_CHECK_CASES (default 40) hippocampus cases from
# ../shared/data/hippocampus into GPU_CHECK_DATA (default gpu_data/: git-ignored, a few MB; a
# GPU machine receives the
# repository, not ../shared, so name gpu_data in the run's carry list). The check writes into
# $OUT (the device's output folder) or gpu_check_out/:
#   plan2d.yaml, plan3d.yaml          the planned 2D and 3D configurations for a GPU
#   bench_2d.json, bench_3d.json      python -m tf_medseg benchmark: the input pipeline's rate
#                                     against the training rate (pipeline_over_training: is
#                                     the GPU kept fed by that machine's cores?), inference,
#                                     and training under mixed_float16 + XLA against float32
#                                     without XLA (and the two other pairs), 3 alternating rounds
#   mirrored/                         a short training under MirroredStrategy on the device(s)
#                                     (runtime.json names the strategy and its replicas)
#   best/                             the best configuration of the hippocampus table
#                                     (GPU_CHECK_BEST, --set overrides) trained to its budget on
#                                     fold 0 (GPU_CHECK_MINUTES, default 3), scored on whole scans
#   summary.txt                       the figures that go into docs/measurements.md
set -euo pipefail
cd "$(dirname "$0")/.."

DATA="${GPU_CHECK_DATA:-gpu_data}/Task04_Hippocampus"
OUT="${OUT:-gpu_check_out}"
MODE=full
case "${1:-}" in
    --prepare) MODE=prepare ;;
    --tiny) MODE=tiny ;;
    "") ;;
    *) echo "usage: bash benchmarks/gpu_check.sh [--prepare | --tiny]" >&2; exit 2 ;;
esac

if [ "$MODE" = prepare ]; then
    python - "${GPU_CHECK_CASES:-40}" "$DATA" <<'EOF'
import json, shutil, sys
from pathlib import Path
src = Path("../shared/data/hippocampus/Task04_Hippocampus")
if not (src / "dataset.json").is_file():
    sys.exit(f"error: {src}/dataset.json not found: --prepare needs ../shared beside the project")
dst = Path(sys.argv[2])
meta = json.loads((src / "dataset.json").read_text())
meta["training"] = meta["training"][:int(sys.argv[1])]
meta["numTraining"] = len(meta["training"])
for sub in ("imagesTr", "labelsTr"):
    (dst / sub).mkdir(parents=True, exist_ok=True)
for pair in meta["training"]:
    for key in ("image", "label"):
        shutil.copy2(src / pair[key], dst / pair[key])
(dst / "dataset.json").write_text(json.dumps(meta, indent=1))
size = sum(f.stat().st_size for f in dst.rglob("*") if f.is_file())
print(f"{len(meta['training'])} cases in {dst} ({size / 2**20:.1f} MiB)")
EOF
    exit 0
fi

if [ ! -f "$DATA/dataset.json" ]; then
    echo "error: $DATA/dataset.json not found: run 'bash benchmarks/gpu_check.sh --prepare' first (beside ../shared)" >&2
    exit 2
fi
mkdir -p "$OUT"
COMMON=(data.root="$DATA" data.data_dir="$OUT/tfds" train.overlay_slices=0)
SECONDS_EACH=10; ROUNDS=3; MINUTES="${GPU_CHECK_MINUTES:-3}"; DEVICE=gpu; STEPS=250; DIMS="2 3"
if [ "$MODE" = tiny ]; then
    # every step at toy sizes, so that a CPU runs the whole script in a couple of minutes (the
    # runtime comparison only with GPU_CHECK_ROUNDS: XLA compiles take minutes on a CPU; the
    # plan and benchmark of 3D only, unless GPU_CHECK_DIMS="2 3": 2D runs the same commands)
    COMMON+=(model.base_filters=4 data.num_folds=2)
    SECONDS_EACH=0.5; ROUNDS=${GPU_CHECK_ROUNDS:-0}; MINUTES=0.05; DEVICE=cpu; STEPS=2
    DIMS="${GPU_CHECK_DIMS:-3}"
fi
BEST=(data.plan=auto plan.dims=3 ${GPU_CHECK_BEST:-})
say() { echo "$*" | tee -a "$OUT/summary.txt"; }
: > "$OUT/summary.txt"
# the devices TensorFlow sees are named by the MirroredStrategy line below (no import here)
say "gpu_check ($MODE) on $(hostname), $(nproc) cores, $(free -g 2>/dev/null | awk '/^Mem:/ {print $2 " GiB"}')"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | sed 's/^/gpu: /' | tee -a "$OUT/summary.txt" || true

for dims in $DIMS; do
    python -m tf_medseg plan --config hippocampus.yaml --set "${COMMON[@]}" plan.device=$DEVICE \
        plan.dims=$dims $( [ "$MODE" = tiny ] && echo plan.memory_gb=0.05 ) \
        --out "$OUT/plan${dims}d.yaml" > "$OUT/plan${dims}d.log" 2>&1
    python -m tf_medseg benchmark --data-root "$DATA" --config "$OUT/plan${dims}d.yaml" \
        --set "${COMMON[@]}" --seconds "$SECONDS_EACH" $( [ "$ROUNDS" -gt 0 ] && echo --compare-runtimes "$ROUNDS" ) \
        > "$OUT/bench_${dims}d.log" 2>&1
    tail -n 1 "$OUT/bench_${dims}d.log" > "$OUT/bench_${dims}d.json"
    python - "$OUT/bench_${dims}d.json" "$dims" <<'EOF' | tee -a "$OUT/summary.txt"
import json, sys
r = json.loads(open(sys.argv[1]).read())
rt = r.get("runtimes") or {}
fast = rt.get("mixed_float16+xla") or rt.get("mixed_bfloat16")
slow = rt.get("float32")
ratio = f"{fast / slow:.2f}x" if fast and slow else "n/a"
print(f"{sys.argv[2]}D planned: training {r['train_images_per_s']} {r.get('samples', 'samples')}/s, "
      f"pipeline {r['pipeline_slices_per_s']}/s (pipeline / training {r['pipeline_over_training']}), "
      f"inference {r['infer_images_per_s']}/s, {r['infer_seconds_per_volume']} s a volume; "
      f"runtimes {rt}; half precision (+XLA) over float32: {ratio}; peak RSS {r['peak_rss_mb']} MB")
EOF
done

python train.py --config "$OUT/plan3d.yaml" --set "${COMMON[@]}" train.strategy=mirrored \
    train.epochs=1 train.steps_per_epoch=$STEPS train.run_dir="$OUT/mirrored" \
    export.saved_model=false > "$OUT/mirrored.log" 2>&1
python - "$OUT/mirrored/runtime.json" <<'EOF' | tee -a "$OUT/summary.txt"
import json, sys
r = json.loads(open(sys.argv[1]).read())
print(f"MirroredStrategy: {r['strategy']} with {r['replicas']} replica(s), precision {r['precision']}, "
      f"jit_compile {r['jit_compile']}, devices {r['devices']}")
EOF

python train.py --config hippocampus.yaml --set "${COMMON[@]}" "${BEST[@]}" plan.device=$DEVICE \
    $( [ "$MODE" = tiny ] && echo plan.memory_gb=0.05 ) train.max_minutes="$MINUTES" \
    train.epochs=1000 train.steps_per_epoch=$STEPS train.val_steps=20 train.keep=last \
    data.fold=0 train.run_dir="$OUT/best" export.saved_model=false > "$OUT/best.log" 2>&1
python - "$OUT/best" <<'EOF' | tee -a "$OUT/summary.txt"
import json, sys
from pathlib import Path
run = Path(sys.argv[1])
m = json.loads((run / "metrics.json").read_text())
b = json.loads((run / "budget.json").read_text())
print(f"best configuration, fold 0, budget {b['budget_minutes']:g} min: {b['epochs']} epochs "
      f"({b['steps']} steps, {b['seconds_per_step']} s a step): Dice {m['dice']:.3f} "
      + " ".join(f"{k[5:]} {v:.3f}" for k, v in m.items() if k.startswith("dice_") and "pooled" not in k)
      + f", HD95 {m.get('hd95')}")
EOF
echo "gpu_check: done; figures in $OUT/summary.txt"

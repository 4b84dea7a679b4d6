#!/usr/bin/env bash
# The measured GPU run (issue 14): build a random-weight ACE-Step v1 model set, time it with
# ONNX Runtime in fp32 and fp16, and the PyTorch pipeline on the same weights in bf16; write ONE
# JSON of figures. Needs no network. docs/gpu.md explains the figures.
#
# Invocation (from the repository root, on a machine with one NVIDIA GPU):
#   bench/gpu_check.sh [--wheel-parts DIR] [--out FILE] [--work DIR]
#                      [--provider cuda] [--preset full] [--duration 60] [--steps 27]
#                      [--threads N] [--skip-torch] [--checkpoint DIR] [--models DIR]
#   - --wheel-parts DIR: wheels to install first into a venv made with --system-site-packages
#     (pip install --no-deps, no index). A wheel split into parts (NAME.whl.part00, .part01, ...,
#     e.g. `split -b 60M -d onnxruntime_gpu-*.whl onnxruntime_gpu-....whl.part`) is joined
#     (`cat NAME.whl.part* > NAME.whl`) first; whole *.whl files there are installed as they are.
#     For a machine with torch + the CUDA 13 libraries + onnx but only the CPU onnxruntime.
#   - --out FILE: the JSON (default: $OUT/gpu_check.json when $OUT is set, else ./gpu_check.json).
#   - --work DIR: checkpoint, model sets and logs (default: build/gpu-check). Steps whose
#     output is complete there are skipped, so a second call on the same machine resumes.
#   - --checkpoint DIR / --models DIR: use this random-weight checkpoint / its fp32 model set
#     instead of building them (`lofi-export tiny CK --preset P`, `lofi-export onnx CK M32
#     --precision fp32`). The fp16 set is made from the fp32 one (`lofi-export to-fp16`, else
#     `lofi-export onnx --precision fp16`, else skipped and said so in the JSON).
#   What it brings along: the repository (a few MiB) and the wheel parts; keep both under 64 MiB
#   per transfer (parts can come over several transfers into a git-ignored folder, e.g.
#   build/wheels/). Aimed at one call under 10 minutes on an H200 box with 16 cores (the fp32
#   export is the long step; the fp16 set is converted from it) but not yet measured there: if a
#   call runs out of time, call again on the same machine and the finished steps are skipped.
#   With the device tool: `bench/gpu_check.sh --wheel-parts build/wheels` ($OUT is set there).
#   On CPU, small shapes (what tests/bench/test_gpu_check.py runs):
#   bench/gpu_check.sh --provider cpu --preset tiny --duration 5 --steps 3 --out /tmp/g.json
#
# Exit status: 0 when every step ran (whatever the figures), 1 when a step failed (the JSON then
# says which, with the end of its log), 2 for a bad option.
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PROVIDER=cuda PRESET=full DURATION=60 STEPS=27 THREADS="" WHEELS="" SKIP_TORCH=0
CK_GIVEN="" M32_GIVEN=""
WORK="$REPO/build/gpu-check"  # git-ignored: kept between calls on the same machine
OUTFILE="${OUT:-.}/gpu_check.json"
PYTHON="${PYTHON:-python3}"

usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { print }' "$0" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in --skip-torch|-h|--help) ;; *)
    [ $# -ge 2 ] || { echo "gpu_check: $1 needs a value" >&2; exit 2; } ;;
  esac
  case "$1" in
    --provider) PROVIDER="$2"; shift 2 ;;
    --preset) PRESET="$2"; shift 2 ;;
    --duration) DURATION="$2"; shift 2 ;;
    --steps) STEPS="$2"; shift 2 ;;
    --threads) THREADS="$2"; shift 2 ;;
    --wheel-parts) WHEELS="$2"; shift 2 ;;
    --work) WORK="$2"; shift 2 ;;
    --out) OUTFILE="$2"; shift 2 ;;
    --skip-torch) SKIP_TORCH=1; shift ;;
    --checkpoint) CK_GIVEN="$2"; shift 2 ;;
    --models) M32_GIVEN="$2"; shift 2 ;;
    -h|--help) usage ;;
    *) echo "gpu_check: unknown option $1" >&2; usage ;;
  esac
done
case "$PRESET" in tiny|full) ;; *) echo "gpu_check: --preset is tiny or full" >&2; exit 2 ;; esac
mkdir -p "$WORK/logs" || exit 2
STEPS_FILE="$WORK/steps.jsonl"
: > "$STEPS_FILE"
STARTED=$(date +%s)

# step NAME CMD...: run CMD with its output in logs/NAME.log; record status and seconds.
step() {
  local name="$1"; shift
  local t0 rc ms
  t0=$(date +%s%N)
  echo "gpu_check: $name" >&2
  "$@" > "$WORK/logs/$name.log" 2>&1
  rc=$?
  ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  printf '{"step": "%s", "rc": %d, "sec": %d.%03d}\n' "$name" "$rc" $((ms / 1000)) $((ms % 1000)) \
    >> "$STEPS_FILE"
  [ $rc -eq 0 ] || echo "gpu_check: $name failed ($rc): see $WORK/logs/$name.log" >&2
  return $rc
}

# 1. Python: the venv with the carried wheels, or the python found.
install_wheels() {
  local joined="$WORK/wheels" first name
  "$PYTHON" -m venv --system-site-packages "$WORK/venv" || return 1
  mkdir -p "$joined"
  for first in "$WHEELS"/*.whl.part*0; do
    [ -e "$first" ] || continue
    name="$(basename "${first%.part*}")"
    cat "$WHEELS/$name".part* > "$joined/$name" || return 1
  done
  cp "$WHEELS"/*.whl "$joined/" 2>/dev/null
  ls "$joined"/*.whl > /dev/null || { echo "no wheel in $WHEELS"; return 1; }
  "$WORK/venv/bin/python" -m pip install --no-deps --no-index "$joined"/*.whl
}
if [ -n "$WHEELS" ]; then
  step install_wheels install_wheels && PYTHON="$WORK/venv/bin/python"
fi
# The repository without installing it: lofi_daemon from the root, lofi_export = export/.
mkdir -p "$WORK/pypath"
ln -sfn "$REPO/export" "$WORK/pypath/lofi_export"
export PYTHONPATH="$REPO:$WORK/pypath${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
THREAD_ARGS=()
[ -n "$THREADS" ] && THREAD_ARGS=(--threads "$THREADS")

# 2. The random-weight checkpoint and its fp32 and fp16 model sets.
CK="${CK_GIVEN:-$WORK/ck-$PRESET}" M32="${M32_GIVEN:-$WORK/m32-$PRESET}" M16="$WORK/m16-$PRESET"
build_checkpoint() {
  [ -e "$CK/.done" ] && return 0
  rm -rf "$CK" && "$PYTHON" -m lofi_export tiny "$CK" --preset "$PRESET" && touch "$CK/.done"
}
export_fp32() {
  [ -e "$M32/manifest.json" ] && return 0
  local precision=()
  [ "$HAS_FP16" != 0 ] && precision=(--precision fp32)
  "$PYTHON" -m lofi_export onnx "$CK" "$M32" --force "${precision[@]}"
}
export_fp16() {
  [ -e "$M16/manifest.json" ] && return 0
  if [ "$HAS_FP16" = to-fp16 ]; then
    "$PYTHON" -m lofi_export to-fp16 "$M32" "$M16" --force
  else
    "$PYTHON" -m lofi_export onnx "$CK" "$M16" --force --precision fp16
  fi
}
HAS_FP16=0  # 0: no fp16 in this exporter; 1: onnx --precision fp16; to-fp16: the converter
"$PYTHON" -m lofi_export onnx --help 2>/dev/null | grep -q -- "fp16" && HAS_FP16=1
"$PYTHON" -m lofi_export to-fp16 --help > /dev/null 2>&1 && HAS_FP16=to-fp16
step environment "$PYTHON" "$REPO/bench/gpu_summary.py" environment --out "$WORK/environment.json"
if [ -z "$CK_GIVEN" ]; then step checkpoint build_checkpoint; fi
if [ -z "$M32_GIVEN" ]; then step export_fp32 export_fp32; fi
if [ "$HAS_FP16" != 0 ] && [ -e "$M32/manifest.json" ]; then step export_fp16 export_fp16; fi

# 3. ONNX Runtime: two runs each (the second is the warm figure), the denoiser kept loaded.
PRECISIONS=(fp32)
[ "$HAS_FP16" != 0 ] && PRECISIONS+=(fp16)
for precision in "${PRECISIONS[@]}"; do
  models="$M32"; [ "$precision" = fp16 ] && models="$M16"
  [ -e "$models/manifest.json" ] || continue
  step "bench_$precision" bash -c '"$@" > "$0"' "$WORK/bench-$precision.json" \
    "$PYTHON" -m lofi_daemon bench --models "$models" --provider "$PROVIDER" \
    --duration "$DURATION" --steps "$STEPS" --runs 2 --keep-loaded --check-placement \
    "${THREAD_ARGS[@]}"
done

# 3b. fp16 vs fp32 graph by graph on the same provider (on a GPU the fp16 products really run
# in fp16; on CPU onnxruntime computes them in fp32 from the fp16 weights).
if [ -e "$M16/manifest.json" ]; then
  step precision bash -c '"$@" > "$0"' "$WORK/precision.json" \
    "$PYTHON" -m lofi_export compare-precision "$M32" "$M16" --provider "$PROVIDER"
fi

# 4. PyTorch eager on the same weights, bf16, on the GPU (CPU for --provider cpu).
if [ "$SKIP_TORCH" = 0 ] && [ -e "$M32/manifest.json" ]; then
  device=cuda; [ "$PROVIDER" = cpu ] && device=cpu
  step torch "$PYTHON" "$REPO/bench/torch_pipeline.py" "$CK" "$M32" --device "$device" \
    --dtype bfloat16 --duration "$DURATION" --steps "$STEPS" "${THREAD_ARGS[@]}" \
    --out "$WORK/torch.json"
fi

# 5. One JSON of figures.
"$PYTHON" "$REPO/bench/gpu_summary.py" summary --work "$WORK" --out "$OUTFILE" \
  --provider "$PROVIDER" --preset "$PRESET" --duration "$DURATION" --steps "$STEPS" \
  --has-fp16 "$([ "$HAS_FP16" = 0 ] && echo 0 || echo 1)" --torch "$(( 1 - SKIP_TORCH ))" --wall-sec "$(( $(date +%s) - STARTED ))"

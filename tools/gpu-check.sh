#!/usr/bin/env bash
# Builds what the GPU checks need and runs them on a machine with an NVIDIA GPU,
# nvcc, CMake, PyTorch and transformers, without Debian's -dev packages and
# without a network (stage the header-only dependencies first, on a machine
# that has them: bash tools/stage-gpu-deps.sh, then carry .gpu-deps along).
#
#   bash tools/gpu-check.sh OUT_DIR
#
# Runs, logging each to OUT_DIR: every GPU test (sc2-cuda-tests: ops against
# the CPU, fixtures against transformers, greedy parity, the engine); a 3B-shaped
# random checkpoint against transformers in bf16 (tools/gpu/compare_transformers.py);
# sc2-generate --device cuda on the bundled model beside the CPU's output; and a
# first sc2-bench --device cuda on the 3B shape (prefill 512 and 2048 tokens,
# decode at batch 1 and 16). Exits non-zero if a check failed.
set -uo pipefail
out=${1:?usage: tools/gpu-check.sh OUT_DIR}
mkdir -p "$out"
root=$(cd "$(dirname "$0")/.." && pwd)
deps="$root/.gpu-deps"
build="$root/build-gpu"
[ -d "$deps" ] || { echo "gpu-check: $deps is missing: run tools/stage-gpu-deps.sh where the packages are" >&2; exit 2; }
failed=0
step() {  # name command...: runs it, logs to OUT_DIR/name.log, remembers a failure
  local name=$1; shift
  local start=$SECONDS
  "$@" >"$out/$name.log" 2>&1
  local rc=$?
  echo "gpu-check: $name: exit $rc in $((SECONDS - start)) s" | tee -a "$out/summary.txt"
  [ $rc -eq 0 ] || failed=1
  return $rc
}
{ nvidia-smi; nvcc --version; cmake --version; } >"$out/machine.txt" 2>&1
step configure cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 \
  -DSC2_ENABLE_CUDA=ON -DSC2_NATIVE=OFF -DCMAKE_PREFIX_PATH="$deps/cmake" -DSC2_SIMDE_INCLUDE_DIR="$deps/include" \
  || { tail -40 "$out/configure.log"; exit 1; }
step build cmake --build "$build" -j"$(nproc)" --target sc2-cuda-tests sc2-generate sc2-bench sc2-logits sc2-make-checkpoint \
  || { grep -m20 -B2 -A8 "error" "$out/build.log"; exit 1; }
step tests "$build/tests/sc2-cuda-tests" --durations yes
step parity python3 "$root/tools/gpu/compare_transformers.py" --build "$build" --out "$out" --checkpoint /tmp/sc2-3b-bf16
generate() { "$build/examples/sc2-generate" --prompt 'def fibonacci(n):' --max-new-tokens 48 --quiet "$@"; }
step generate_cuda generate --device cuda
step generate_cpu generate
# bf16 on the GPU against float32 on the CPU: shown, not required to agree token for token.
diff "$out/generate_cpu.log" "$out/generate_cuda.log" >"$out/generate_diff.txt" && echo "gpu-check: sc2-generate: the GPU's text is the CPU's" | tee -a "$out/summary.txt"
step bench512 "$build/bench/sc2-bench" --device cuda --model /tmp/sc2-3b-bf16 --prompt-tokens 512 --decode-tokens 128 \
  --batch 1 16 --bandwidth
step bench2048 "$build/bench/sc2-bench" --device cuda --model /tmp/sc2-3b-bf16 --prompt-tokens 2048 --decode-tokens 64 \
  --chunk 2048 --batch 1 16
tail -5 "$out/tests.log"; cat "$out/parity.log" "$out/bench512.log" "$out/bench2048.log" 2>/dev/null
exit $failed

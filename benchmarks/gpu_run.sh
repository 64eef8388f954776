#!/usr/bin/env bash
# How benchmarks/results/<machine>/ were produced on an air-gapped GPU host.
#
# Here (with network):  python -m kit bundle --python 3.12 --cuda --out wheels --have-freeze have.txt --also scipy
#   (have.txt = `pip list --format=freeze` taken on the GPU host), then copy wheels/ over.
# There:                benchmarks/gpu_run.sh <phase> ...   with phases in this order:
#   install  — reassemble + check the bundle, install it into $SITE (the image's torch stays in use)
#   serve    — write the Llama-3-8B-shaped stand-in model, start `kit serve` detached with $PARAMS
#              (default params/gpu-bench.yaml; params/gpu-bench-fp8.yaml for FP8)
#   sweep    — benchmarks/gpu_sweep.py (args passed through)
#   perf     — one perf_analyzer concurrency sweep through the pipeline
#   profile  — where the time goes under load: py-spy of the vLLM and pipeline stubs, top, nvidia-smi dmon
#   stop     — stop the server
#   baseline — vLLM's own AsyncLLM, same engine arguments and prompts (benchmarks/vllm_baseline.py; server stopped)
#   vs-vllm-serve OUT — `python -m kit bench --vs-vllm-serve` (vllm serve, then the kit's OpenAI service) into OUT
#   demo REPORTS      — the four notebooks through papermill (`python -m kit demo`), reports into REPORTS
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=${WHEELS:-/tmp/wheels}
SITE=${SITE:-/tmp/site}
export PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH}
export PATH=$SITE/bin:$PATH
export VLLM_USE_FLASHINFER_SAMPLER=0   # flashinfer is not in the bundle; vLLM's own sampler is used
# The detached server's record and logs outside the project: a fresh copy of the project sent over
# a running one must not lose them.
export KIT_STATE_DIR=${KIT_STATE_DIR:-/tmp/kit-state}
# perf_analyzer links Debian's libb64.so.0d: put a copy of it (`dpkg -x` of libb64-0d) beside the
# wheels; the server wheel's own renamed copy is the fallback.
mkdir -p /tmp/kitlib
for lib in "$WHEELS"/libb64.so.0d "$SITE"/nvidia_pytriton.libs/libb64-*.so.0d; do
  if [ -f "$lib" ]; then ln -sf "$lib" /tmp/kitlib/libb64.so.0d; break; fi
done
export LD_LIBRARY_PATH=/tmp/kitlib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
phase=$1; shift
case "$phase" in
  install)
    python3 -m kit bundle --install "$WHEELS" --target "$SITE"
    python3 -c "import numpy, vllm, tritonclient.grpc; print('numpy', numpy.__version__, 'vllm', vllm.__version__)" ;;
  serve)
    python3 -m kit build --dummy-llama3 models/llama3-8b-dummy
    start=$(date +%s)
    python3 -m kit serve --params "${PARAMS:-params/gpu-bench.yaml}" --detach --timeout 900
    echo "kit serve ready after $(( $(date +%s) - start ))s" ;;
  sweep)
    python3 benchmarks/gpu_sweep.py --tokenizer models/llama3-8b-dummy "$@" ;;
  perf)
    out=$1; shift
    python3 - "$out" "$@" <<'PY'
import sys
from pathlib import Path
from kit.config import PIPELINE_MODEL
from kit.detached import read_state
from kit.perf import perf_analyzer
from kit.perf.prompts import default_prompts
out = Path(sys.argv[1]); levels = [int(c) for c in (sys.argv[2] if len(sys.argv) > 2 else "1,8,64").split(",")]
prompts = default_prompts(64, "models/llama3-8b-dummy")
frame = perf_analyzer.run(read_state().endpoints.grpc_address, PIPELINE_MODEL, concurrency=levels, max_tokens=300,
                          prompts=prompts, out_dir=out / "perf_analyzer", measurement_interval_ms=8000,
                          prompt_is_formatted=True)
frame.to_csv(out / "perf_analyzer.csv", index=False)
print(frame.to_string(index=False))
PY
    ;;
  profile)
    # One level (PROFILE_CONCURRENCY streams × PROFILE_MAX_TOKENS), first direct, then through the
    # pipeline, each sampled for 10 s by py-spy (raw collapsed stacks) while top records every
    # process's and every server thread's CPU use and nvidia-smi dmon the GPU's load.
    # PROFILE_PYSPY_ARGS adds py-spy options, e.g. --gil: only the thread holding the GIL is sampled,
    # which shows what the stub's one interpreter spends its time on.
    out=$1; shift
    mkdir -p "$out"
    for endpoint in direct pipeline; do
      python3 benchmarks/gpu_sweep.py --tokenizer models/llama3-8b-dummy --out "$out/load_$endpoint" \
        --endpoints $endpoint --blocking-concurrency "" --concurrency "${PROFILE_CONCURRENCY:-128}" --max-tokens "${PROFILE_MAX_TOKENS:-50}" --rounds "${PROFILE_ROUNDS:-24}" \
        > "$out/load_$endpoint.log" 2>&1 &
      load=$!
      sleep 8
      llm=$(pgrep -f 'triton_python_backend_stub.*/llama3-8b-instruct/' | head -1)
      py-spy record ${PROFILE_PYSPY_ARGS:-} --nonblocking -r 250 -d 10 -f raw -o "$out/${endpoint}_llm_stub.txt" -p "$llm" &
      if [ "$endpoint" = pipeline ]; then
        bls=$(ps -eo pid,pcpu,args --sort=-pcpu | awk '/triton_python_backend_stub.*\/llama_bls_ensemble\//{print $1; exit}')
        py-spy record ${PROFILE_PYSPY_ARGS:-} --nonblocking -r 250 -d 10 -f raw -o "$out/${endpoint}_bls_stub.txt" -p "$bls" &
      fi
      nvidia-smi dmon -s u -c 10 > "$out/${endpoint}_dmon.txt" 2>&1 &
      top -c -b -n 2 -d 4 -w 250 | awk '/^top -/{n++} n==2' > "$out/${endpoint}_top.txt"
      top -H -b -n 2 -d 4 -w 250 -p "$(pgrep -x tritonserver)" | awk '/^top -/{n++} n==2' > "$out/${endpoint}_server_threads.txt"
      wait
    done ;;
  stop)
    python3 -m kit stop ;;
  baseline)
    python3 benchmarks/vllm_baseline.py --model-json build/model_repository/llama3-8b-instruct/1/model.json \
      --tokenizer models/llama3-8b-dummy "$@" ;;
  vs-vllm-serve)
    out=$1; shift
    python3 -m kit build --dummy-llama3 models/llama3-8b-dummy
    python3 -m kit bench --vs-vllm-serve --params "${PARAMS:-params/gpu-bench.yaml}" --out "$out" "$@" ;;
  demo)
    python3 -m kit build --dummy-llama3 models/llama3-8b-dummy
    python3 -m kit demo --params "${PARAMS:-params/gpu-bench.yaml}" --reports "$1" ;;
  *) echo "unknown phase $phase" >&2; exit 2 ;;
esac

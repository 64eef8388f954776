#!/usr/bin/env bash
# How benchmarks/results/<machine>/ were produced on an air-gapped GPU host.
#
# Here (with network):  python -m kit bundle --python 3.12 --cuda --out wheels --have-freeze have.txt
#   (have.txt = `pip list --format=freeze` taken on the GPU host), then copy wheels/ over.
# There:                benchmarks/gpu_run.sh <phase> ...   with phases in this order:
#   install  — reassemble + check the bundle, install it into $SITE (the image's torch stays in use)
#   serve    — write the Llama-3-8B-shaped stand-in model, start `kit serve` detached with params/gpu-bench.yaml
#   sweep    — benchmarks/gpu_sweep.py (args passed through)
#   perf     — one perf_analyzer concurrency sweep through the pipeline
#   stop     — stop the server
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=${WHEELS:-/tmp/wheels}
SITE=${SITE:-/tmp/site}
export PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH}
export PATH=$SITE/bin:$PATH
export VLLM_USE_FLASHINFER_SAMPLER=0   # flashinfer is not in the bundle; vLLM's own sampler is used
# perf_analyzer links libb64.so.0d; the server wheel bundles a copy under another name
mkdir -p /tmp/kitlib
ln -sf "$(ls "$SITE"/nvidia_pytriton.libs/libb64-*.so.0d 2>/dev/null | head -1)" /tmp/kitlib/libb64.so.0d || true
export LD_LIBRARY_PATH=/tmp/kitlib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
phase=$1; shift
case "$phase" in
  install)
    python3 -m kit bundle --install "$WHEELS" --target "$SITE"
    python3 -c "import numpy, vllm, tritonclient.grpc; print('numpy', numpy.__version__, 'vllm', vllm.__version__)" ;;
  serve)
    python3 -m kit build --dummy-llama3 models/llama3-8b-dummy
    start=$(date +%s)
    python3 -m kit serve --params params/gpu-bench.yaml --detach --timeout 900
    echo "kit serve ready after $(( $(date +%s) - start ))s" ;;
  sweep)
    python3 benchmarks/gpu_sweep.py --tokenizer models/llama3-8b-dummy "$@" ;;
  perf)
    out=$1; shift
    python3 - "$out" "$@" <<'PY'
import sys
from pathlib import Path
from kit.config import PIPELINE_MODEL
from kit.perf import load, perf_analyzer
from kit.server import read_state
out = Path(sys.argv[1]); levels = [int(c) for c in (sys.argv[2] if len(sys.argv) > 2 else "1,8,64").split(",")]
prompts = load.default_prompts(64, "models/llama3-8b-dummy")
frame = perf_analyzer.run(read_state()["grpc_url"], PIPELINE_MODEL, concurrency=levels, max_tokens=300,
                          prompts=prompts, out_dir=out / "perf_analyzer", measurement_interval_ms=8000,
                          prompt_is_formatted=True)
frame.to_csv(out / "perf_analyzer.csv", index=False)
print(frame.to_string(index=False))
PY
    ;;
  stop)
    python3 -m kit stop ;;
  *) echo "unknown phase $phase" >&2; exit 2 ;;
esac

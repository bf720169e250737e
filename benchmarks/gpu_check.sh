#!/usr/bin/env bash
# The GPU check, for a machine with CUDA (under five minutes on one GPU): both quickstarts
# and the compare quickstart on `--device cuda` in float16 and in bfloat16 (temporary copies
# of the specs with `dtype:` set), `runner reproduce` on each run (exit 0: identical
# outputs), then the compare benchmark on CUDA. Without CUDA it stops at once with exit 2.
#
#   PYTHON=.venv/bin/python benchmarks/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
export HF_HUB_OFFLINE=1

if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "gpu_check: no CUDA device here; nothing was run" >&2
    exit 2
fi
"$PY" -c 'import torch; print("gpu_check:", torch.cuda.get_device_name(0), "torch", torch.__version__)'

work=$(mktemp -d -t runner-gpu-check-XXXXXX)
failed=0
for dtype in float16 bfloat16; do
    for spec in specs/quickstart-text.yaml specs/quickstart-image.yaml specs/quickstart-compare.yaml; do
        name=$(basename "$spec" .yaml)
        copy="$work/$name-$dtype.yaml"
        # the spec with its top-level dtype replaced (or added after `version:`)
        "$PY" - "$spec" "$copy" "$dtype" <<'EOF'
import re
import sys

source, target, dtype = sys.argv[1:]
text = re.sub(r"(?m)^dtype:.*\n", "", open(source).read())
text = re.sub(r"(?m)^(version:.*\n)", lambda m: m.group(1) + f"dtype: {dtype}\n", text, count=1)
open(target, "w").write(text)
EOF
        echo "== $name $dtype"
        if ! run_dir=$(timeout 120 "$PY" -m runner run --device cuda --out "$work/runs" "$copy" | tail -n 1); then
            echo "gpu_check: $name in $dtype failed" >&2
            failed=1
            continue
        fi
        echo "   run: $run_dir"
        if ! timeout 120 "$PY" -m runner reproduce --out "$work/again" "$run_dir"; then
            echo "gpu_check: reproducing $name in $dtype gave other outputs" >&2
            failed=1
        fi
    done
done

echo "== compare benchmark (cuda)"
timeout 150 "$PY" benchmarks/bench_compare.py --device cuda --repeats 3 || failed=1
echo "gpu_check: $([ "$failed" = 0 ] && echo passed || echo FAILED); runs in $work"
exit "$failed"

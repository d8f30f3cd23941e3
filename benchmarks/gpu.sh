#!/usr/bin/env bash
# One-command GPU check: the CUDA tests, the runtime table (ours vs timm/torchvision, eager,
# CUDA-graph replay and torch.compile, inference and training, bf16 + channels_last, batch 256)
# and an `incdsl train` throughput run, each under its own time cap and all within
# GPU_SH_BUDGET seconds (470); then one summary table, also written to $OUT/summary.md when OUT
# is set. Compiling takes most of the time: compiled inference and compiled training are
# separate parts (caps 120 s and 180 s), run last, on GPU_SH_COMPILE_NETWORKS; after them, on
# what the budget leaves, a kernel profile of eager training (benchmarks/kernels.py).
#
#   benchmarks/gpu.sh                        run on the GPU machine (no network needed there)
#   benchmarks/gpu.sh --prepare              here, with network: fetch the pure-Python wheels the
#                                            GPU machine lacks into .whl/ (ignored by git), then
#                                            print the device call that carries them
#   benchmarks/gpu.sh --prepare --dry-run    print the pip command only
#   benchmarks/gpu.sh --dry-run              print the plan (parts, caps, commands) only
#
# Without a CUDA GPU it says so and exits 0. A failing or timed-out part is reported in the
# table and the next part still runs. Settings (environment): GPU_SH_BUDGET (total seconds),
# GPU_SH_BATCH (256), GPU_SH_STEPS (training steps, 150, over two epochs), GPU_SH_LEVELS (eager and CUDA graphs:
# none,train,infer), GPU_SH_COMPILE_LEVELS (train,infer: under torch.compile level none times like
# the reference; compiled training times those that hold in training),
# GPU_SH_SKIP (parts to leave out, any of "tests eager graph train compile kernels"),
# GPU_SH_NETWORKS ("inception_v4 googlenet"), GPU_SH_COMPILE_NETWORKS ("inception_v4"),
# PYTHON (python3), DEVICE_PYTHON_VERSION (3.12, the GPU machine's, for --prepare); to try the
# script itself on a CPU: GPU_SH_DEVICE=cpu GPU_SH_BATCH=1 GPU_SH_STEPS=2 GPU_SH_ITERS=1 GPU_SH_WARMUP=0.
set -u

cd "$(dirname "$0")/.." || exit 1
PY=${PYTHON:-python3}
WHEELS=.whl
SITE=${GPU_SH_SITE:-/tmp/incdsl-site}
BUDGET=${GPU_SH_BUDGET:-470}
BATCH=${GPU_SH_BATCH:-256}
STEPS=${GPU_SH_STEPS:-150}
LEVELS=${GPU_SH_LEVELS:-none,train,infer}
COMPILE_LEVELS=${GPU_SH_COMPILE_LEVELS:-train,infer}
SKIP=" ${GPU_SH_SKIP:-} "
skipped() { [[ $SKIP == *" $1 "* ]]; }
NETWORKS=${GPU_SH_NETWORKS:-inception_v4 googlenet}
COMPILE_NETWORKS=${GPU_SH_COMPILE_NETWORKS:-inception_v4}
DEVICE_PY=${DEVICE_PYTHON_VERSION:-3.12}
DEVICE=${GPU_SH_DEVICE:-cuda}  # cpu: run the same parts on the CPU, to try the script itself
ITERS=${GPU_SH_ITERS:-}        # timed iterations (default: 20 eager, 10 compiled)
WARMUP=${GPU_SH_WARMUP:-3}

# The pure-Python packages incdsl needs at run time (numpy and torch are on the GPU machine),
# pytest and hypothesis, and their requirements on Python 3.12: one pinned version each (two
# versions of one package stop the install). Keep in step with pyproject.toml.
REQUIREMENTS=(
    lark==1.3.1 networkx==3.6.1 graphviz==0.21
    pytest==9.0.3 pluggy==1.6.0 iniconfig==2.3.0 packaging==26.2 pygments==2.20.0
    hypothesis==6.155.2 sortedcontainers==2.4.0 pytest-xdist==3.8.0 execnet==2.1.2
)

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
die() { echo "gpu.sh: error: $*" >&2; exit 2; }

prepare=0 dry=0
for arg in "$@"; do
    case $arg in
        --prepare) prepare=1 ;;
        --dry-run) dry=1 ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown argument '$arg' (expected --prepare, --dry-run or --help)" ;;
    esac
done
case $BUDGET$BATCH$STEPS$ITERS$WARMUP in *[!0-9]*) die "GPU_SH_BUDGET, _BATCH, _STEPS, _ITERS and _WARMUP must be whole numbers" ;; esac

# --- --prepare: here, with network ---------------------------------------------------------

device_call() {
    cat <<EOF
Device call (from the repository root that holds $WHEELS/):
  run(command="bash benchmarks/gpu.sh", carry=["$WHEELS"], timeout_s=540)
The summary comes back as \$OUT/summary.md (and at the end of output_tail).
EOF
}

if (( prepare )); then
    # --platform only matters for binary wheels; pip wants it with --python-version all the same.
    pip_cmd=("$PY" -m pip download --no-deps --only-binary=:all: --python-version "$DEVICE_PY"
             --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64
             --platform manylinux2014_x86_64 --platform any -d "$WHEELS.tmp" "${REQUIREMENTS[@]}")
    if (( dry )); then
        printf '%q ' "${pip_cmd[@]}"; echo
        echo "then: $WHEELS.tmp replaces $WHEELS"
        device_call
        exit 0
    fi
    rm -rf "$WHEELS.tmp"
    if ! "${pip_cmd[@]}"; then
        rm -rf "$WHEELS.tmp"
        echo "gpu.sh: error: pip download failed; $WHEELS/ left as it was" >&2
        exit 1
    fi
    rm -rf "$WHEELS" && mv "$WHEELS.tmp" "$WHEELS"
    echo "$(ls "$WHEELS"/*.whl | wc -l) wheels, $(du -sh "$WHEELS" | cut -f1) in $WHEELS/:"
    ls "$WHEELS"
    device_call
    exit 0
fi

# --- the GPU run ----------------------------------------------------------------------------

gpu_name() {
    if command -v nvidia-smi >/dev/null 2>&1; then
        nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | head -n 1
    else
        echo "$DEVICE"
    fi
}

has_gpu() {
    if command -v nvidia-smi >/dev/null 2>&1 && ! nvidia-smi -L >/dev/null 2>&1; then
        return 1
    fi
    "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' >/dev/null 2>&1
}

if (( ! dry )) && [[ $DEVICE == cuda ]] && ! has_gpu; then
    echo "gpu.sh: no CUDA GPU here ($PY's torch.cuda.is_available() is not True); nothing to run"
    exit 0
fi

if (( dry )); then
    RESULTS='$OUT' WORK='$WORK'
else
    if [[ -n ${OUT:-} ]]; then
        RESULTS=$OUT
    else
        RESULTS=$(mktemp -d "${TMPDIR:-/tmp}/incdsl-gpu.XXXXXX") || exit 1
    fi
    mkdir -p "$RESULTS" || exit 1
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/incdsl-gpu-work.XXXXXX") || exit 1
    : >"$RESULTS/gpu.log"
fi
LOG=$RESULTS/gpu.log
PART_LOG=$WORK/part.log  # the output of the part that ran last, for its table note
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
START=$SECONDS
DEADLINE=$((SECONDS + BUDGET))
TABLE=()

# part NAME CAP COMMAND...: run COMMAND under `timeout` (CAP seconds, less if the budget is
# nearly spent), output to the terminal and gpu.log; record status and seconds for the table.
part() {
    local name=$1 cap=$2; shift 2
    local left=$((DEADLINE - SECONDS)) t rc start status
    t=$(( cap < left ? cap : left ))
    if (( dry )); then
        printf '[%s] cap %ss: %s\n' "$name" "$cap" "$*"
        return 0
    fi
    if (( t < 15 )); then
        PART_STATUS="skipped (budget spent)"; TABLE+=("| $name | $PART_STATUS | 0 | $cap | - |")
        return 1
    fi
    echo "=== [$name] cap ${t}s: $*" | tee -a "$LOG"
    start=$SECONDS
    timeout -k 10 "$t" "$@" 2>&1 | tee "$PART_LOG" | tee -a "$LOG"
    rc=${PIPESTATUS[0]}
    case $rc in
        0) status=ok ;;
        124|137) status="TIMEOUT after ${t}s" ;;
        *) status="FAILED (exit $rc)" ;;
    esac
    PART_STATUS=$status
    echo "=== [$name] $status in $((SECONDS - start))s" | tee -a "$LOG"
    TABLE+=("| $name | $status | $((SECONDS - start)) | $t |")
    return "$rc"
}

# note TEXT: the result column of the part that ran last (a skipped part has its "-")
note() { [[ $PART_STATUS == skipped* ]] || TABLE[-1]="${TABLE[-1]} ${1:--} |"; }

install_wheels() {  # runs under `timeout`, in a child bash (exported)
    if ! ls "$WHEELS"/*.whl >/dev/null 2>&1; then
        echo "no $WHEELS/*.whl: using what this machine has (run benchmarks/gpu.sh --prepare where there is network)"
    else
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
            "$WHEELS"/*.whl || return 1
    fi
    "$PY" -c 'import incdsl, lark, networkx, graphviz, torch; print("imports ok: incdsl, lark", lark.__version__,
"networkx", networkx.__version__, "torch", torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU")'
}
export -f install_wheels
export PY WHEELS SITE

runtime() {  # runtime NAME CAP JSON LEVELS ARGS...: one runtime.py part, its rows kept as JSON
    local name=$1 cap=$2 json=$3 levels=$4; shift 4
    part "$name" "$cap" "$PY" benchmarks/runtime.py --device "$DEVICE" --batch "$BATCH" --amp bf16 --channels-last \
        --levels "$levels" --json "$json" "$@"
    (( dry )) || note "$("$PY" -c 'import json, sys; rows = json.load(open(sys.argv[1]))["rows"]
print(sum(r["ratio"] is not None for r in rows), "of", len(rows), "rows timed")' "$json" 2>/dev/null || echo "no rows")"
}

if (( ! dry )); then
    echo "gpu.sh: budget ${BUDGET}s; results in $RESULTS" | tee -a "$LOG"
    gpu_name | tee -a "$LOG"
fi

# 1. wheels -> private site (PYTHONPATH first, so the carried versions win)
[[ -d $WHEELS ]] && export PYTHONPATH=$SITE:$PYTHONPATH
part install 20 bash -c install_wheels
(( dry )) || note "$(ls "$WHEELS"/*.whl 2>/dev/null | wc -l) wheels"

# 2. the CUDA tests: every test marked `cuda`, the slow ones included, in one process on the
#    one GPU (-o addopts= drops the default run's `-m 'not slow'` and pytest-xdist's `-n auto`)
mapfile -t cuda_files < <(grep -l "mark\.cuda" tests/test_*.py)
skipped tests || part "cuda tests" 100 env PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 "$PY" -m pytest -q -o addopts= -m cuda -p no:cacheprovider \
    "${cuda_files[@]}"
skipped tests || (( dry )) || note "$(grep -aE '(passed|failed|skipped|errors?|deselected|no tests ran).* in [0-9.]+s' "$PART_LOG" | tail -n 1 | tr -d '=' | sed 's/^ *//; s/ *$//')"

# 3. runtime table, eager: both networks, inference and training
# shellcheck disable=SC2086  # NETWORKS is a list of words
skipped eager || runtime "runtime eager" 80 "$WORK/runtime-eager.json" "$LEVELS" --exec eager --networks $NETWORKS \
    --iters "${ITERS:-15}" --warmup "$WARMUP"

# 4. inference replayed from CUDA graphs (IncdslNet.capture; the reference recorded alike)
# shellcheck disable=SC2086
skipped graph || [[ $DEVICE != cuda ]] || runtime "runtime cuda-graph" 40 "$WORK/runtime-graph.json" "$LEVELS" --exec cuda-graph --modes infer \
    --networks $NETWORKS --iters "${ITERS:-15}" --warmup "$WARMUP"

# 5. training throughput: `incdsl train` on synthetic data, two epochs of STEPS/2 steps: the first
#    pays for start-up (loader processes, cuDNN's algorithm search, the allocator), the second is
#    the steady rate; images are made on the fly, so loader processes keep the GPU fed
WORKERS=$(nproc 2>/dev/null || echo 2); WORKERS=$(( WORKERS < 8 ? WORKERS : 8 ))
HALF=$(( (STEPS + 1) / 2 ))
skipped train || part "incdsl train" 70 "$PY" -m incdsl train specs/inception_v4.inc --data synthetic \
    --synthetic-size $((BATCH * HALF)) --batch-size "$BATCH" --epochs 2 --warmup-epochs 0 \
    --amp bf16 --channels-last --optimize train --device "$DEVICE" --workers "$WORKERS" --out "$WORK/train"
skipped train || (( dry )) || note "$("$PY" - "$WORK/train/metrics.jsonl" "$PART_LOG" "$HALF" "$BATCH" <<'EOF' 2>/dev/null
import json, re, sys
metrics, log, steps, batch = sys.argv[1:]
try:  # metrics.jsonl, else the epoch lines (a run stopped while saving its checkpoint)
    rates = [json.loads(line)["images_per_s"] for line in open(metrics).read().splitlines()]
except (OSError, ValueError, KeyError):
    rates = [float(r.replace(",", "")) for r in
             re.findall(r"epoch \d+/\d+ .*?([\d,.]+) img/s", open(log, errors="replace").read())]
if rates:
    first = f"; epoch 1, with start-up: {rates[0]:,.1f} img/s" if len(rates) > 1 else " (start-up included)"
    print(f"Inception-v4 {rates[-1]:,.1f} img/s training in epoch {len(rates)} ({steps} step{'s' * (steps != '1')} of {batch}, bf16, "
          f"channels_last, eager, data loading included){first}")
EOF
)"

# 6-7. runtime table under torch.compile: inference, then training, each its own part and cap
#      (compiling takes most of the time: the reference and each level, per network and mode;
#      training compiles forward and backward, and only the levels exact in training)
TRAIN_COMPILE_LEVELS=$(tr ',' '\n' <<<"$COMPILE_LEVELS" | grep -vx infer | paste -sd, -)
# shellcheck disable=SC2086  # COMPILE_NETWORKS is a list of words
skipped compile || runtime "runtime compile infer" 120 "$WORK/runtime-compile-infer.json" "$COMPILE_LEVELS" \
    --exec compile --modes infer --networks $COMPILE_NETWORKS --iters "${ITERS:-10}" --warmup "$WARMUP"
# shellcheck disable=SC2086
skipped compile || [[ -z $TRAIN_COMPILE_LEVELS ]] || runtime "runtime compile train" 180 \
    "$WORK/runtime-compile-train.json" "$TRAIN_COMPILE_LEVELS" --exec compile --modes train \
    --networks $COMPILE_NETWORKS --iters "${ITERS:-10}" --warmup "$WARMUP"

# 8. where the training time goes (benchmarks/kernels.py: kernel time by category, ours vs the
#    reference, eager training at level train): last, so it runs only on what the budget leaves
skipped kernels || part "kernels train" 45 "$PY" benchmarks/kernels.py --device "$DEVICE" --batch "$BATCH" \
    --amp bf16 --channels-last --mode train --level train --network inception_v4 --warmup "$WARMUP" --steps 5
if ! skipped kernels && (( ! dry )) && [[ $PART_STATUS != skipped* ]]; then
    note "$(grep -a '^| \*\*total' "$PART_LOG" | tail -n 1 | tr -d '*|' | sed 's/^ *total *//; s/  */ /g; s/ *$//; s/^/ms\/step ours, ref, difference: /')"
    grep -avE '^[A-Z]+:' "$PART_LOG" >"$WORK/kernels.md"  # the tables, without the profiler's log lines
fi

(( dry )) && exit 0

# --- summary ---------------------------------------------------------------------------------
{
    echo "## benchmarks/gpu.sh on $(gpu_name): $((SECONDS - START)) s of ${BUDGET} s"
    echo
    echo "| part | status | seconds | cap | result |"
    echo "|---|---|---:|---:|---|"
    printf '%s\n' "${TABLE[@]}"
    echo
    jsons=()
    for f in eager graph compile-infer compile-train; do
        [[ -s $WORK/runtime-$f.json ]] && jsons+=("$WORK/runtime-$f.json")
    done
    if (( ${#jsons[@]} )); then
        echo "Runtime, ours vs timm/torchvision (ours/ref: time ratio, below 1 is faster; speedup = ref/ours):"
        echo
        "$PY" benchmarks/runtime.py --merge "${jsons[@]}" 2>&1
        cp "${jsons[@]}" "$RESULTS"/ 2>/dev/null
    else
        echo "Runtime: no results."
    fi
    echo
    grep -a '^level .*not available' "$LOG" | sort -u
    if [[ -s $WORK/kernels.md ]]; then
        echo
        echo "Where the training time goes (benchmarks/kernels.py, eager, level train):"
        echo
        cat "$WORK/kernels.md"
    fi
} >"$WORK/summary.md"
cp "$WORK/train/metrics.jsonl" "$RESULTS/train-metrics.jsonl" 2>/dev/null
cp "$WORK/summary.md" "$RESULTS/summary.md"
echo
cat "$RESULTS/summary.md"
rm -rf "$WORK"
exit 0

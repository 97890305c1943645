#!/usr/bin/env bash
# cnnlab's GPU check: gradient checks, layer and model benchmarks at every precision, ResNet-18
# on CIFAR-10-sized data (two epochs: compiling, then steady) with every speed switch on, and
# LeNet on MNIST, all on backend=cuda. Meant to finish within 8 minutes on one GPU, compiling
# included (not yet run on one); it needs no network.
#
# Usage, from the repository root:
#   benchmarks/gpu_check.sh [--mnist DIR] [--cifar DIR] [--out DIR] [--backend cuda|torch] [--quick]
#     --mnist DIR   MNIST in its original files (train-images-idx3-ubyte.gz, ...): LeNet trains
#                   2 epochs on it and must reach 98% (skipped, with a line, without it). The
#                   folder may be copied into the repository first, e.g. into .data/ (ignored).
#     --cifar DIR   CIFAR-10's python version (cifar-10-batches-py/): ResNet-18's epoch runs on
#                   it; without it on 50,000 generated 3x32x32 images (data=shapes).
#     --out DIR     where the runs and check.log go (default /tmp/cnnlab-gpu-check).
#     --backend     cuda (default); torch rehearses the same steps on the CPU.
#     --quick       small sizes everywhere: a rehearsal of the script itself, not a measurement.
#
# What it needs: python3 with numpy and a CUDA build of torch (>=2.4,<2.14), as GPU images have,
# and cnnlab's pure-Python dependencies. Wheels found in .whl/ at the repository root (add
# `/.whl/` to .git/info/exclude) are installed into $OUT/site with --no-index, so nothing is
# downloaded. A GPU image with PyTorch usually lacks only these; make them where there is a
# network, with the Python version of the GPU machine:
#   pip download --no-deps -d .whl hydra-core==1.3.2 omegaconf==2.3.0
#   pip wheel --no-deps -w .whl antlr4-python3-runtime==4.9.3   # PyPI has only its source
# Where the image lacks any of typer, click, rich, shellingham, markdown-it-py, mdurl, pygments,
# PyYAML, tensorboard, matplotlib, scipy or threadpoolctl, carry those wheels too (pure Python
# ones with `pip download --no-deps`, compiled ones for that machine's platform and Python).
set -euo pipefail

BACKEND=cuda MNIST="" CIFAR="" OUT=/tmp/cnnlab-gpu-check QUICK=0
while [ $# -gt 0 ]; do
    case "$1" in
        --mnist) MNIST=$(realpath "$2"); shift 2 ;;
        --cifar) CIFAR=$(realpath "$2"); shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --backend) BACKEND=$2; shift 2 ;;
        --quick) QUICK=1; shift ;;
        -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
        *) echo "gpu_check: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

REPO=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$OUT"
OUT=$(realpath "$OUT")
LOG=$OUT/check.log
: > "$LOG"
say() { echo "$*" | tee -a "$LOG"; }

if compgen -G "$REPO/.whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$OUT/site" "$REPO"/.whl/*.whl
    export PYTHONPATH="$OUT/site${PYTHONPATH:+:$PYTHONPATH}"
fi
# cnnlab from this checkout (no install needed: it finds conf/ beside the package).
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

cnnlab() { python3 -m cnnlab "$@"; }
# One step: its command line, its output in the log, its wall time and exit status in the summary.
SUMMARY=()
step() {
    local name=$1; shift
    local started=$SECONDS status=0
    say ""
    say "== $name: cnnlab $*"
    cnnlab "$@" 2>&1 | tee -a "$LOG" || status=$?
    SUMMARY+=("$(printf '%-52s exit %d  %4d s' "$name" "$status" $((SECONDS - started)))")
    return 0
}
# A value from a run's results.json / last epoch of metrics.jsonl.
result() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$@"; }
epochs() {
    python3 -c "
import json, sys
for line in open(sys.argv[1]):
    e = json.loads(line)
    if e['kind'] == 'epoch':
        print(f\"epoch {e['epoch']}: {e['images_per_s']:.0f} images/s, {e['time_s']:.1f} s in training steps\")" "$1"
}

say "cnnlab GPU check, $(date -u +%FT%TZ), backend=$BACKEND, out=$OUT"
python3 - <<'EOF' 2>&1 | tee -a "$LOG"
import platform, torch
print(f"python {platform.python_version()}, torch {torch.__version__}, CUDA {torch.version.cuda}")
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f"GPU: {p.name}, {p.total_memory / 2**30:.0f} GiB, {p.multi_processor_count} SMs")
else:
    print("no CUDA GPU visible")
EOF

if [ "$QUICK" = 1 ]; then
    GRAD=(layer=conv) CONV=(bench.batch=4 bench.runs=2) MODEL=(bench.batch=8 bench.runs=2 model.widths=[8,16,32,64])
    SHAPES=(data.train_size=1112 data.test_size=100)
    RESNET=(trainer.batch_size=64 model.widths=[8,16,32,64] data.limit=1000)
    LENET=(data.limit=2000)
else
    GRAD=() CONV=() MODEL=(bench.batch=128 bench.runs=20)
    SHAPES=(data.train_size=55556 data.test_size=2000)  # 50,000 train after the 10% held out
    RESNET=(trainer.batch_size=256)
    LENET=()
fi
H="hydra.run.dir=$OUT"

step "gradcheck, float64" gradcheck "backends=[$BACKEND]" "${GRAD[@]}" "$H/gradcheck"
step "gradcheck, bf16-mixed" gradcheck "backends=[$BACKEND]" trainer.precision=bf16-mixed \
    "${GRAD[@]}" "$H/gradcheck-bf16"
for p in 32-true 64-true bf16-mixed 16-mixed; do
    layout=()
    case $p in *mixed) layout=(trainer.channels_last=true) ;; esac
    step "bench conv, $p" bench conv "backends=[$BACKEND]" "trainer.precision=$p" \
        "${layout[@]}" "${CONV[@]}" "$H/bench-conv-$p"
    step "bench model resnet18, $p" bench model model=resnet18 "backends=[$BACKEND]" \
        "trainer.precision=$p" "${layout[@]}" "${MODEL[@]}" "$H/bench-model-$p"
done

DATA=(data=shapes "${SHAPES[@]}")
if [ -n "$CIFAR" ]; then
    DATA=(data=cifar10 "data.root=$CIFAR" data.download=false)
fi
FAST=(trainer.precision=bf16-mixed trainer.channels_last=true trainer.compile=true trainer.rng=device)
# Two epochs: the first includes compiling, the second is the steady speed.
step "ResNet-18, bf16 + channels_last + compile" train model=resnet18 \
    "backend=$BACKEND" "${DATA[@]}" trainer.epochs=2 "${FAST[@]}" "${RESNET[@]}" "$H/resnet18"
if [ -f "$OUT/resnet18/metrics.jsonl" ]; then
    say "ResNet-18 (first epoch compiles):"
    epochs "$OUT/resnet18/metrics.jsonl" | tee -a "$LOG"
fi

if [ -n "$MNIST" ]; then
    step "LeNet, MNIST, 2 epochs" train model=lenet data=mnist "data.root=$MNIST" \
        data.download=false trainer.epochs=2 "backend=$BACKEND" "${LENET[@]}" "$H/lenet"
    if [ -f "$OUT/lenet/results.json" ]; then
        acc=$(result "$OUT/lenet/results.json" test_acc)
        verdict=$(python3 -c "print('ok' if $acc >= 0.98 else 'BELOW 98%')")
        say "LeNet MNIST test accuracy: $acc ($verdict)"
    fi
else
    say "LeNet on MNIST skipped: no --mnist DIR given"
fi

say ""
say "== summary (full output: $LOG)"
for line in "${SUMMARY[@]}"; do say "$line"; done

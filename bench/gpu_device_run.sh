#!/usr/bin/env bash
# bench/gpu_recipe.py on the lent GPU machine (issue 22), in one device call.
#
# That machine has the image's python3 (3.12, its own torch) but neither torch-lr-finder,
# torchinfo and grad-cam (with ttach) nor ../shared. So, first, HERE (the development machine,
# network on), from the project's root:
#
#     bash bench/gpu_device_run.sh prepare
#
# which fills two git-ignored folders: .whl/ (the four wheels; grad-cam ships no wheel, so pip
# builds one) and .device-data/ (the CIFAR-10 sample, which must never be committed). Then the
# device tool's call, from a session whose task was lent a GPU:
#
#     run(command="bash bench/gpu_device_run.sh", carry=[".whl", ".device-data"], timeout_s=600)
#
# There it installs the wheels into /tmp/site, runs `python3 -m bench.gpu_recipe` (runs into
# /tmp/recipe, cut at RECIPE_LIMIT_S, 500 s by default: SIGTERM ends the run in hand as
# interrupted and the results written so far stay), and puts into $OUT: the result JSON under
# its final name (copy it into bench/results/), recipe.log, profile.txt, nvidia-smi.txt and,
# when small enough, runs.tar.xz (the run folders without checkpoints). Arguments after the
# script's name go to gpu_recipe, e.g. `bash bench/gpu_device_run.sh --variants fast
# --epochs 5` to rerun a part. Every figure also lands in recipe.log, should $OUT lose a file.
#
# Budget: a session has 15 minutes of device time in all; the machine's start takes 1-2 of them
# and this call up to about 9, so a second full run does not fit: rerun a part. `prepare` is
# safe to repeat (a new session's work tree may lack the two ignored folders); what travels is
# about 19 MB, under the 64 MiB limit.
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "prepare" ]; then
    set -e
    mkdir -p .whl .device-data
    rm -f .whl/*.whl
    platforms=""
    for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 \
             manylinux1_x86_64; do platforms="$platforms --platform $p"; done
    # shellcheck disable=SC2086
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $platforms \
        -d .whl torch-lr-finder==0.2.2 torchinfo==1.8.0 ttach==0.0.3
    python3 -m pip wheel --no-deps -w .whl grad-cam==1.5.7
    install -m 0644 ../shared/data/cifar10-sample.npz .device-data/
    sha256sum .device-data/cifar10-sample.npz  # ../shared/data/README.md gives f4288f5e...
    ls -l .whl .device-data
    exit 0
fi

: "${OUT:?OUT is unset: this part runs on the device machine (see the comment at the top)}"
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "the wheels in .whl/ did not install: was .whl carried?" | tee "$OUT/recipe.log"; exit 3; }
export PYTHONPATH=/tmp/site
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
started=$(mktemp)
timeout -k 30 "${RECIPE_LIMIT_S:-500}" python3 -m bench.gpu_recipe --sample .device-data/cifar10-sample.npz \
    --out /tmp/recipe "$@" 2>&1 | tee "$OUT/recipe.log"
status=${PIPESTATUS[0]}
find bench/results -name '*.json' -newer "$started" -exec cp {} "$OUT/" \;
cp /tmp/recipe/result.json "$OUT/" 2>/dev/null  # where --dry-run writes it
cp /tmp/recipe/profile.txt "$OUT/" 2>/dev/null
if [ -d /tmp/recipe/runs ] && command -v xz >/dev/null; then
    tar -C /tmp/recipe -cf - --exclude=checkpoints runs | xz -T0 -6 > "$OUT/runs.tar.xz"
    [ "$(stat -c %s "$OUT/runs.tar.xz")" -le $((15 * 1024 * 1024)) ] || rm -f "$OUT/runs.tar.xz"
fi
ls -l "$OUT"
exit "$status"

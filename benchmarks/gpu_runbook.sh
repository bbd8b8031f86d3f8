#!/usr/bin/env bash
# The one command a session with a lent GPU runs on the device machine (see benchmarks/README.md).
#
#   bash benchmarks/gpu_runbook.sh <stage> <commit>
#
# stages
#   check         environment only: GPU, torch, TF32 switches, spikelib imports, the data
#   bench         the timing scripts, each under its own time limit: parallel_vs_serial.py,
#                 train_step.py, then two checks of the training loop — one epoch under
#                 torchrun with one process (DistributedDataParallel on NCCL; synthetic data,
#                 smoke model) and sync_check.py (where a training step waits for the GPU) —
#                 serial_inference.py, scifar_epoch.py (each model stopped after
#                 SCIFAR_SECONDS and estimated), then extrapolation.py in the time left (its
#                 --max-seconds picks the epochs and skips eval lengths that would not fit)
#   scifar        scifar_epoch.py timing whole synthetic sCIFAR epochs (s4d, frssm, pssm)
#   extrap        extrapolation.py with its GPU defaults (train at 2048, serial to 30000)
#   fmnist-epoch  one full-profile Fashion-MNIST epoch of s4d frssm pssm ddsn sif, all five at
#                 once on the one GPU; summary in results/fmnist-epoch-<device>.json
#   fmnist        the full Fashion-MNIST runs of the five models and the refractory ablation
#                 (frssm R = 0 1 4 8; R = 2 is the frssm run itself), all at once, each
#                 continued with --resume from runs/fmnist/<run>/checkpoint.pt and stopped at an
#                 epoch boundary before the time is up; call it again (carrying runs/fmnist)
#                 until every run has written results/<run>.json
#
# Every stage ends by packing the result JSON it wrote, its logs and (fmnist, extrap) the last
# checkpoints into ONE file $OUT/spikelib-<stage>.tar.gz (split into 15 MiB parts
# spikelib-<stage>.tar.gz.part-N only if larger).
#
# environment
#   OUT      where the tar goes (set by the device tool; default runs/runbook-out)
#   DEVICE   cuda (default) | cpu: the CPU dry run
#   TINY=1   tiny sizes for every script (the CPU dry run of the logic; results go to
#            runs/runbook-tiny/results, not results/)
#   PY       python with torch (default python3; here .venv/bin/python)
#   BUDGET   seconds for the whole stage, packing included (default 540: a call may run 600)
#   LOGROOT  folder of the per-call log folders (default runs/runbook)
#   RES      folder of the result JSON (default results; with TINY=1 runs/runbook-tiny/results)
#   EPOCHS_PER_CALL  fmnist: at most this many epochs per run in one call (default: as many
#            as fit)
#   FM_EST   fmnist: seconds per epoch assumed for a run without a checkpoint (default: train
#            one epoch, then plan from its measured time)
#   SCIFAR_SECONDS  bench: seconds each model's sCIFAR epoch is timed before estimating (40)
#   TRAIN_THREADS   torch CPU threads per Fashion-MNIST training process (1)
#   FM_MODELS, FM_REFRACTORY  the Fashion-MNIST runs (default "s4d frssm pssm ddsn sif" and
#            "0 1 4 8"; e.g. FM_REFRACTORY="" to leave out the ablation, fewer runs at once)
set -uo pipefail

STAGE=${1:-}
COMMIT=${2:-}
case "$STAGE" in
  check|bench|scifar|extrap|fmnist-epoch|fmnist) ;;
  *) echo "usage: bash benchmarks/gpu_runbook.sh {check|bench|scifar|extrap|fmnist-epoch|fmnist} <commit>" >&2
     exit 2 ;;
esac
if [ -z "$COMMIT" ]; then
  echo "usage: bash benchmarks/gpu_runbook.sh $STAGE <commit>   (the device copy has no .git)" >&2
  exit 2
fi

cd "$(dirname "$0")/.." || exit 2
ROOT=$PWD
PY=${PY:-python3}
DEVICE=${DEVICE:-cuda}
TINY=${TINY:-0}
BUDGET=${BUDGET:-540}
OUT=${OUT:-$ROOT/runs/runbook-out}
PACK_MARGIN=25                       # seconds kept for packing
START=$(date +%s)
DEADLINE=$((START + BUDGET - PACK_MARGIN))
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 PYTHONHASHSEED=0
export SPIKELIB_DATA="$ROOT/data"
if [ "$TINY" = 1 ]; then RES=${RES:-runs/runbook-tiny/results}; else RES=${RES:-results}; fi
LOGDIR=${LOGROOT:-runs/runbook}/$STAGE-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$LOGDIR" "$OUT" "$RES"
touch "$LOGDIR/.start"
SUMMARY=$LOGDIR/summary.txt

say() { echo "[runbook $(date -u +%H:%M:%S) +$(( $(date +%s) - START ))s] $*" | tee -a "$SUMMARY"; }
left() { echo $((DEADLINE - $(date +%s))); }

# run_step NAME LIMIT CMD...: run CMD with a time limit of min(LIMIT, time left), output to
# $LOGDIR/NAME.log; a failure or timeout is logged and the stage goes on.
run_step() {
  local name=$1 limit=$2; shift 2
  local t; t=$(left)
  [ "$limit" -lt "$t" ] && t=$limit
  if [ "$t" -lt 15 ]; then say "SKIP $name: only $(left) s left"; return 0; fi
  say "START $name (limit ${t}s): $*"
  local t0; t0=$(date +%s)
  timeout -k 10 "$t" "$@" > "$LOGDIR/$name.log" 2>&1
  local rc=$?
  if [ $rc -eq 0 ]; then say "DONE $name in $(( $(date +%s) - t0 )) s"
  elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then say "TIMEOUT $name after ${t}s (rc $rc)"
  else say "FAILED $name rc $rc in $(( $(date +%s) - t0 )) s (see $LOGDIR/$name.log)"; fi
  return 0
}

# flags a script accepts (read once from its --help): a teammate's script may lack --commit.
HELP_TEXT=""
accepts() {
  [ -n "$HELP_TEXT" ] || HELP_TEXT=$("$PY" "$1" --help 2>/dev/null)
  grep -q -- "$2" <<< "$HELP_TEXT"
}

env_report() {
  say "stage $STAGE, commit $COMMIT, device $DEVICE, budget ${BUDGET}s, tiny $TINY, python $PY"
  if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version,clocks.sm --format=csv \
      2>&1 | tee -a "$SUMMARY"
  fi
  "$PY" - <<'EOF' 2>&1 | tee -a "$SUMMARY"
import sys, torch
print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda,
      "available", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
print("TF32 (left as found): cuda.matmul.allow_tf32", torch.backends.cuda.matmul.allow_tf32,
      "cudnn.allow_tf32", torch.backends.cudnn.allow_tf32,
      "float32_matmul_precision", torch.get_float32_matmul_precision())
import spikelib.models, spikelib.train  # noqa: F401  (fails here if the tree is incomplete)
print("spikelib imports from", spikelib.models.__file__)
EOF
}

# Fashion-MNIST: unpack the carried *-ubyte.gz files (anywhere under data/) into
# data/FashionMNIST/raw/, with the Makefile's `make data` where make exists.
prepare_fmnist() {
  if [ -f data/FashionMNIST/raw/t10k-labels-idx1-ubyte ]; then return 0; fi
  local src
  src=$(find data -name 't10k-labels-idx1-ubyte.gz' -printf '%h\n' 2>/dev/null | head -n 1)
  if [ -z "$src" ]; then
    say "ERROR: no Fashion-MNIST: carry data/fashion-mnist-gz (the four *-ubyte.gz files)"
    return 1
  fi
  if command -v make >/dev/null 2>&1; then
    make -s data FMNIST_SRC="$src" DATA=data >> "$LOGDIR/data.log" 2>&1
  else
    mkdir -p data/FashionMNIST/raw
    for f in "$src"/*-ubyte.gz; do gunzip -c "$f" > "data/FashionMNIST/raw/$(basename "$f" .gz)"; done
  fi
  if [ -f data/FashionMNIST/raw/t10k-labels-idx1-ubyte ]; then say "unpacked Fashion-MNIST from $src"
  else say "ERROR: could not unpack Fashion-MNIST from $src"; return 1; fi
}

pack() {
  local list=$LOGDIR/packed.txt tarball=$OUT/spikelib-$STAGE.tar.gz
  {
    find "$RES" -maxdepth 1 -name '*.json' -newer "$LOGDIR/.start" 2>/dev/null
    find "$LOGDIR" -type f ! -name packed.txt
    local pt=checkpoint.pt
    [ "${PACK_PT:-1}" = 1 ] || pt=no-checkpoints
    for d in "$@"; do       # what this call wrote there (checkpoints unless PACK_PT=0)
      [ -d "$d" ] && find "$d" -type f -newer "$LOGDIR/.start" \( -name '*.json' \
        -o -name '*.jsonl' -o -name '*.log' -o -name "$pt" \)
    done
  } | sort -u > "$list"
  say "packing $(wc -l < "$list") files into $tarball (list: $list)"
  echo "$list" >> "$list"
  tar -czf "$tarball" -T "$list"
  local size; size=$(stat -c %s "$tarball")
  if [ "$size" -gt $((15 * 1024 * 1024)) ]; then
    split -b 15M -d -a 1 "$tarball" "$tarball.part-" && rm -f "$tarball"
    say "tar is $size bytes: split into $(ls "$tarball".part-* | wc -l) parts; join with cat"
  fi
  ls -l "$OUT"
}

show_logs() {   # the tail of every step log (the device tool returns the last 12,000 chars)
  for f in "$LOGDIR"/*.log; do
    [ -f "$f" ] || continue
    echo "===== $(basename "$f") (last lines)"; tail -n "${1:-15}" "$f"
  done
  echo "===== summary"; cat "$SUMMARY"
}

tiny() { [ "$TINY" = 1 ]; }

# --------------------------------------------------------------------------------------------
stage_bench() {
  local common=(--device "$DEVICE" --commit "$COMMIT")
  local pvs=benchmarks/parallel_vs_serial.py
  if [ -f "$pvs" ]; then
    local a=(--device "$DEVICE")
    accepts "$pvs" --commit && a+=(--commit "$COMMIT")
    accepts "$pvs" --out && a+=(--out "$RES")
    if tiny; then
      accepts "$pvs" --lengths && a+=(--lengths 32)
      accepts "$pvs" --repeats && a+=(--repeats 1)
    fi
    run_step parallel_vs_serial 90 "$PY" "$pvs" "${a[@]}"
  else
    say "SKIP parallel_vs_serial: $pvs is not in this tree"
  fi
  local ts=("${common[@]}" --out "$RES")
  tiny && ts+=(--lengths 32 --batch 2 --repeats 1 --models s4d frssm lif)
  run_step train_step 120 "$PY" benchmarks/train_step.py "${ts[@]}"
  # data parallel on this device: one torchrun epoch, one process (NCCL on CUDA, gloo on CPU)
  local dd=(--standalone --nproc_per_node=1 -m spikelib.train --model frssm --dataset fmnist
            --synthetic --profile smoke --epochs 1 --device "$DEVICE" --commit "$COMMIT"
            --out runs/runbook-torchrun --results "$LOGDIR/torchrun" --run-name torchrun-world1
            --no-progress --dist-timeout 120)
  tiny && dd+=(--limit-train 64 --limit-eval 32 --set d_model=8 --set n_layers=1 --set d_state=4)
  run_step torchrun_world1 120 "$PY" -m torch.distributed.run "${dd[@]}"
  local sy=(--device "$DEVICE")
  tiny && sy+=(--steps 3 --length 32)
  run_step sync_check 90 "$PY" benchmarks/sync_check.py "${sy[@]}"
  local si=("${common[@]}" --out "$RES")
  tiny && si+=(--profile smoke --d-model 8 --n-layers 1 --d-state 4)
  run_step serial_inference 90 "$PY" benchmarks/serial_inference.py "${si[@]}"
  local sc=("${common[@]}" --out "$RES" --max-seconds "${SCIFAR_SECONDS:-40}")
  tiny && sc+=(--profile smoke --n-train 300 --d-model 8 --n-layers 1 --d-state 4)
  run_step scifar_epoch 200 "$PY" benchmarks/scifar_epoch.py "${sc[@]}"
  local t; t=$(( $(left) - 20 ))
  local ex=("${common[@]}" --out "$RES" --max-seconds "$t")
  tiny && ex+=(--profile smoke --work runs/runbook-tiny/extrapolation)
  run_step extrapolation "$t" "$PY" benchmarks/extrapolation.py "${ex[@]}"
}

stage_scifar() {
  local t; t=$(( $(left) - 10 ))
  local sc=(--device "$DEVICE" --commit "$COMMIT" --out "$RES" --max-seconds $(( (t - 60) / 3 )))
  tiny && sc+=(--profile smoke --n-train 300 --d-model 8 --n-layers 1 --d-state 4)
  run_step scifar_epoch "$t" "$PY" benchmarks/scifar_epoch.py "${sc[@]}"
}

stage_extrap() {
  local t; t=$(( $(left) - 10 ))
  local ex=(--device "$DEVICE" --commit "$COMMIT" --out "$RES" --max-seconds $((t - 20)))
  tiny && ex+=(--profile smoke --work runs/runbook-tiny/extrapolation)
  run_step extrapolation "$t" "$PY" benchmarks/extrapolation.py "${ex[@]}"
}

read -ra FM_MODELS <<< "${FM_MODELS-s4d frssm pssm ddsn sif}"
read -ra FM_REFRACTORY <<< "${FM_REFRACTORY-0 1 4 8}"   # R = 2 is the default: the frssm run

# training arguments shared by the Fashion-MNIST stages
fm_args() {
  local a=(--dataset fmnist --device "$DEVICE" --commit "$COMMIT" --data-root data
           --results "$RES" --no-progress --threads "${TRAIN_THREADS:-1}")
  if tiny; then
    a+=(--profile smoke --limit-train 128 --limit-eval 64 --set d_model=8 --set n_layers=1
        --set d_state=4)
  else
    a+=(--profile full)
  fi
  printf '%s\n' "${a[@]}"
}

stage_fmnist_epoch() {
  prepare_fmnist || return 0
  local dir=runs/fmnist-epoch
  rm -rf "$dir"
  mkdir -p "$dir"
  local common; mapfile -t common < <(fm_args)
  local t; t=$(( $(left) - 15 ))
  local m
  for m in "${FM_MODELS[@]}"; do
    # one epoch, all five at once: the times are per epoch with five runs sharing the GPU
    run_step "fmnist-epoch-$m" "$t" "$PY" -m spikelib.train --model "$m" "${common[@]}" \
      --epochs 1 --out "$dir" --results "$dir/results" --run-name "fmnist-epoch-$m" &
  done
  wait
  "$PY" - "$dir/results" "$RES" "$COMMIT" "$DEVICE" "${#FM_MODELS[@]}" "$TINY" <<'EOF' 2>&1 | tee -a "$SUMMARY"
import glob, json, re, sys
from pathlib import Path
import torch
from spikelib.device import device_name
from spikelib.results import provenance, write_result
src, res, commit, device, n, tiny = sys.argv[1:]
device = torch.device(device)
rows = []
for p in sorted(glob.glob(f"{src}/*.json")):
    d = json.loads(Path(p).read_text())
    rows.append({"model": d["model"], "epoch_wall_s": d["epoch_wall_s"][0],
                 "train_s": d["history"][0]["train_s"], "val_acc_after_1_epoch":
                 d["history"][0]["val_acc"], "peak_memory": d["peak_memory"],
                 "params": d["params"], "n_train": d["n_train"]})
    r = rows[-1]
    print(f"{d['model']:6s} epoch {r['epoch_wall_s']:8.1f} s (train {r['train_s']:.1f} s)  "
          f"peak {d['peak_memory']['bytes'] / 2**20:.0f} MiB")
slug = "cpu" if device.type != "cuda" else \
    re.sub(r"[^a-z0-9]+", "-", device_name(device).lower()).strip("-")
prov = provenance(commit, device)
prov["seed"] = 0
out = write_result(Path(res) / f"fmnist-epoch-{slug}.json", {
    "benchmark": "fmnist_epoch", "profile": "smoke-1-epoch" if tiny == "1" else "full-1-epoch",
    "device": device_name(device),
    "concurrent_runs": int(n), "rows": rows, "seed": 0,
    "note": f"one epoch of each model, {n} training processes sharing the device at once: "
            "times are under that contention (what the fmnist stage sees), not alone",
    "provenance": prov, "command": prov["command"]})
print("wrote", out)
EOF
}

# the epoch a checkpoint has reached and its longest epoch in seconds ("0 0" if none)
ck_info() {
  "$PY" - "$1" <<'EOF'
import sys
from pathlib import Path
import torch
p = Path(sys.argv[1])
if not p.is_file():
    print(0, 0)
else:
    ck = torch.load(p, map_location="cpu", weights_only=True)
    print(int(ck["epoch"]), int(max([h["wall_s"] for h in ck["history"]] or [0]) + 1))
EOF
}

# one run: resume from its checkpoint, as many epochs as fit before the deadline, repeat
fm_worker() {
  local run=$1 model=$2; shift 2
  local dir=runs/fmnist ck=runs/fmnist/$run/checkpoint.pt
  local common; mapfile -t common < <(fm_args)
  local epochs=$FM_EPOCHS first=""
  while :; do
    local done_ est
    read -r done_ est < <(ck_info "$ck")
    done_=${done_:-0}; est=${est:-0}
    [ -n "$first" ] || first=$done_
    if [ -f "$RES/$run.json" ] && [ "$done_" -ge "$epochs" ]; then
      say "$run: complete ($done_/$epochs epochs, $RES/$run.json)"; return 0
    fi
    local t; t=$(left)
    [ "$est" -gt 0 ] || est=${FM_EST:-0}
    local n=1
    if [ "$est" -gt 0 ]; then n=$(( (t - 30) * 100 / (est * 115) )); fi
    if [ -n "${EPOCHS_PER_CALL:-}" ]; then
      local quota=$((EPOCHS_PER_CALL - (done_ - first)))
      [ "$n" -gt "$quota" ] && n=$quota
    fi
    if [ "$n" -lt 1 ]; then
      say "$run: stopping at epoch $done_/$epochs (${t}s left, epoch ~${est}s)"; return 0
    fi
    local stop=$((done_ + n)) extra=()
    [ "$done_" -gt 0 ] && extra+=(--resume)
    [ "$stop" -lt "$epochs" ] && extra+=(--stop-after-epoch "$stop")
    run_step "$run-from-$done_" "$t" "$PY" -m spikelib.train --model "$model" "${common[@]}" \
      --out "$dir" --run-name "$run" "${extra[@]}" "$@"
    local after; read -r after _ < <(ck_info "$ck")
    if [ "${after:-0}" -le "$done_" ] && [ ! -f "$RES/$run.json" ]; then
      say "$run: no epoch finished in this attempt (at ${after:-0}/$epochs)"; return 0
    fi
  done
}

stage_fmnist() {
  prepare_fmnist || return 0
  mkdir -p runs/fmnist
  FM_EPOCHS=$("$PY" -c "import sys; from spikelib.config import FULL_EPOCHS, PROFILES; \
print(PROFILES['smoke']['epochs'] if sys.argv[1] == '1' else FULL_EPOCHS['fmnist'])" "$TINY")
  say "Fashion-MNIST: ${#FM_MODELS[@]} models + frssm R in ${FM_REFRACTORY[*]}, $FM_EPOCHS epochs each"
  local m r prof=full
  tiny && prof=smoke
  for m in "${FM_MODELS[@]}"; do
    fm_worker "fmnist-$m-$prof-s0" "$m" &
  done
  for r in "${FM_REFRACTORY[@]}"; do
    fm_worker "fmnist-frssm-R$r-$prof-s0" frssm --set "refractory=$r" &
  done
  wait
}

# --------------------------------------------------------------------------------------------
env_report
case "$STAGE" in
  check)        prepare_fmnist; pack ;;
  bench)        stage_bench; pack runs/extrapolation-* runs/runbook-tiny/extrapolation ;;
  scifar)       stage_scifar; pack ;;
  extrap)       stage_extrap; pack runs/extrapolation-* runs/runbook-tiny/extrapolation ;;
  fmnist-epoch) stage_fmnist_epoch; PACK_PT=0 pack runs/fmnist-epoch ;;
  fmnist)       stage_fmnist; pack runs/fmnist ;;
esac
say "stage $STAGE finished in $(( $(date +%s) - START )) s"
show_logs 14

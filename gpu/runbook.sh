#!/usr/bin/env bash
# The GPU runbook: one command per device call, each stage complete inside its own budget
# (gpu/README.md: the two calls to paste, what they return, what they cost).
#
#   bash gpu/runbook.sh <stage>[+<stage>...] <commit>     (the device copy has no .git)
#   bash gpu/runbook.sh verify+bench <commit>             call 1 (255 s)
#   bash gpu/runbook.sh fmnist <commit>                   call 2 (380 s)
#
# stages (budget: the stage's share of the call's clock; a later stage gets what an earlier
# one left over)
#   check   (60 s)  the environment (below) and the data, nothing else
#   verify  (90 s)  gpu/verify.py: the CUDA path checked at small sizes before any number is
#                   taken — the Triton kernel against the loop, 20 bf16 + fused-AdamW training
#                   steps of every model, checkpoint resume, parallel = serial, no per-step
#                   sync, torch.compile against eager — into results/verify-<device>.json;
#                   a failed check fails the call (exit 1) and is named last in the output
#   bench   (165 s) each script under its own time limit; only repeats and lengths are cut,
#                   batch and model size stay:
#             train_step.py          every model at L = 1024 and 8192, lif (serial BPTT) last
#                                    at each length; 3 repeats, lif 1; frssm compiled against
#                                    eager at L = 1024 after the other rows; a row whose
#                                    projection would not fit is skipped, and said so
#             parallel_vs_serial.py  serial loops at L = 1024; parallel forms and DDSN vs full
#                                    and sliding PSN at L = 1024 and 16384; the refractory
#                                    forms (loop, scans, fused Triton kernel)
#             scifar_epoch.py        synthetic full-size sequential CIFAR-10 (s4d frssm pssm):
#                                    each model timed for 5 s, the epoch estimated from those
#                                    steps and labelled so
#             torchrun               one epoch of spikelib.train under torchrun with one process
#                                    (DistributedDataParallel, NCCL): full-size frssm on the
#                                    first 1,280 Fashion-MNIST training sequences
#   fmnist  (380 s) full-profile Fashion-MNIST runs of s4d frssm pssm ddsn sif at once:
#             probe  every run (and the optional ones: frssm R = 0 1 4 8, lif) timed for about
#                    50 steps at once (gpu/probe.py, discarded)
#             plan   one epoch count E in [5, 20] that every run completes in the time left
#                    (gpu/plan.py); optional runs join only if they cost the main runs no
#                    epoch
#             train  `python -m spikelib.train ... --epochs E --overwrite` for every planned
#                    run at once
#             summary results/fmnist-runbook-<device>.json: E, its rule, the probes, each run's
#                    status, why an absent run is absent; weights/<run>.pt for every run
#
# Every call packs the result JSON written in it (results/), the weights (weights/) and its
# logs (runs/runbook/<stages>-<time>/) into $OUT/spikelib-<stages>.tar.gz (stages joined by
# '-') — unpack it in the repository root — split into 15 MiB parts only if larger. Exit
# status 0 when every step succeeded, 1 when one failed, timed out or was skipped (the tar is
# written either way).
#
# environment
#   OUT      where the tar goes (set by the device tool; default runs/runbook-out)
#   DEVICE   cuda (default) | cpu (the CPU dry run)
#   TINY=1   tiny sizes everywhere: the dry run of the logic (tests/test_runbook.py)
#   PY       python with torch (default python3)
#   B_CHECK B_VERIFY B_BENCH B_FMNIST   a stage's budget in seconds (default 60 90 165 380)
#   DATA     the data folder (default data/): Fashion-MNIST as its four *-ubyte.gz files
#            anywhere below it, unpacked here into DATA/FashionMNIST/raw/
#   RES      result JSON folder (default results/; TINY=1: runs/runbook-tiny/results)
#   WORK     checkpoints and weights of the runs (default runs/; TINY=1: runs/runbook-tiny)
#   LOGROOT  log folders (default runs/runbook)
#   FM_MODELS      the main runs (default "s4d frssm pssm ddsn sif")
#   FM_REFRACTORY  the ablation, frssm with --set refractory=R (default "0 1 4 8"; R = 2 is
#                  the frssm run itself; "" leaves it out)
#   FM_LIF         1 (default): probe lif and train it if E epochs fit; 0: leave it out
#   FM_MIN_EPOCHS, FM_MAX_EPOCHS  the range of E (default 5 and 20; TINY=1: 1 and 2)
set -uo pipefail

usage() {
  echo "usage: bash gpu/runbook.sh <stage>[+<stage>...] <commit>; stages: check verify bench" \
       "fmnist (e.g. verify+bench)" >&2
  exit 2
}
CALL=${1:-}
COMMIT=${2:-}
[ -n "$CALL" ] && [ -n "$COMMIT" ] && [ $# -eq 2 ] || usage
IFS=+ read -ra STAGES <<< "$CALL"
[ ${#STAGES[@]} -ge 1 ] || usage
declare -A SEEN=()
for s in "${STAGES[@]}"; do
  case "$s" in check|verify|bench|fmnist) ;; *) usage ;; esac
  [ -z "${SEEN[$s]:-}" ] || usage
  SEEN[$s]=1
done
budget_of() {
  case $1 in
    check) echo "${B_CHECK:-60}" ;; verify) echo "${B_VERIFY:-90}" ;;
    bench) echo "${B_BENCH:-165}" ;; fmnist) echo "${B_FMNIST:-380}" ;;
  esac
}
BUDGET=0
for s in "${STAGES[@]}"; do BUDGET=$((BUDGET + $(budget_of "$s"))); done
NAME=$(IFS=-; echo "${STAGES[*]}")    # the call's name: stages joined by '-'

cd "$(dirname "$0")/.." || exit 2
ROOT=$PWD
abs() { case $1 in /*) echo "$1" ;; *) echo "$ROOT/$1" ;; esac; }
PY=${PY:-python3}
DEVICE=${DEVICE:-cuda}
TINY=${TINY:-0}
tiny() { [ "$TINY" = 1 ]; }
if tiny; then r=runs/runbook-tiny/results w=runs/runbook-tiny; else r=results w=runs; fi
RES=$(abs "${RES:-$r}")
WORK=$(abs "${WORK:-$w}")
DATA=$(abs "${DATA:-data}")
OUT=$(abs "${OUT:-runs/runbook-out}")
LOGROOT=$(abs "${LOGROOT:-runs/runbook}")
STAMP=$NAME-$(date -u +%Y%m%dT%H%M%SZ)
LOGDIR=$LOGROOT/$STAMP
STAGING=$LOGROOT/.pack-$STAMP          # what goes into the tar, laid out as the repository
START=$(date +%s)
END=$((START + BUDGET))
PACK_S=10                              # the call's last seconds: packing
STAGE_END=$END                         # set per stage (run_stage)
DEADLINE=$((END - PACK_S))             # the steps' limit: the stage's end, or packing's start
mkdir -p "$LOGDIR" "$OUT" "$RES" "$WORK" "$STAGING"
touch "$LOGDIR/.start"
SUMMARY=$LOGDIR/summary.txt
STEPS=$LOGDIR/steps.tsv                # name, exit status, seconds: one line per step
: > "$STEPS"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 PYTHONHASHSEED=0
export SPIKELIB_DATA=$DATA

say() { echo "[runbook +$(( $(date +%s) - START ))s] $*" | tee -a "$SUMMARY"; }
left() { echo $((DEADLINE - $(date +%s))); }
record() { printf '%s\t%s\t%s\n' "$1" "$2" "${3:-0}" >> "$STEPS"; }

# run_step NAME LIMIT CMD...: CMD under `timeout` (LIMIT or the time left, whichever is less),
# its output in $LOGDIR/NAME.log; a failure is logged and the stage goes on.
run_step() {
  local name=$1 t=$2 now; shift 2
  now=$(left)
  [ "$now" -lt "$t" ] && t=$now
  if [ "$t" -lt 5 ]; then say "SKIP $name: $(left) s left"; record "$name" skipped; return 0; fi
  say "START $name (limit ${t} s)"
  printf '$ %s\n' "$*" > "$LOGDIR/$name.log"
  local t0 rc; t0=$(date +%s)
  timeout -k 5 "$t" "$@" >> "$LOGDIR/$name.log" 2>&1
  rc=$?
  local dt=$(( $(date +%s) - t0 ))
  case $rc in
    0) say "DONE $name in ${dt} s" ;;
    124|137) say "TIMEOUT $name after ${dt} s" ;;
    *) say "FAILED $name (exit $rc) after ${dt} s: see $name.log" ;;
  esac
  record "$name" "$rc" "$dt"
}

# run_stage NAME: the stage's steps until its share of the call's clock is used up
CUM=0
run_stage() {
  CUM=$((CUM + $(budget_of "$1")))
  STAGE_END=$((START + CUM))
  DEADLINE=$((STAGE_END < END - PACK_S ? STAGE_END : END - PACK_S))
  say "STAGE $1 (budget $(budget_of "$1") s; ends at +$((STAGE_END - START)) s)"
  case "$1" in
    check)  prepare_fmnist required ;;
    verify) stage_verify ;;
    bench)  stage_bench ;;
    fmnist) stage_fmnist ;;
  esac
}

env_check() {
  if command -v nvidia-smi > /dev/null 2>&1; then
    # compute_mode must be Default for the fmnist stage's processes to share the GPU
    local q=name,memory.total,memory.used,driver_version,clocks.max.sm,compute_mode
    nvidia-smi --query-gpu=$q --format=csv > "$LOGDIR/nvidia-smi.txt" 2>&1
    cat "$LOGDIR/nvidia-smi.txt" >> "$SUMMARY"
  fi
  run_step env 60 "$PY" - "$DEVICE" <<'EOF'
import importlib.util, sys
import torch
want = sys.argv[1]
print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda,
      "available", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
print("TF32 (as found, never changed): cuda.matmul.allow_tf32",
      torch.backends.cuda.matmul.allow_tf32, "cudnn.allow_tf32", torch.backends.cudnn.allow_tf32,
      "float32_matmul_precision", torch.get_float32_matmul_precision())
print("triton (fused refractory kernel):", importlib.util.find_spec("triton") is not None)
import spikelib.train, spikelib.models  # noqa: F401,E401  (fails here if the tree is incomplete)
print("spikelib imports from", spikelib.models.__file__)
if want.startswith("cuda") and not torch.cuda.is_available():
    sys.exit(f"DEVICE={want} but torch sees no CUDA device")
EOF
  tail -n +2 "$LOGDIR/env.log" >> "$SUMMARY"
}

# Fashion-MNIST: the four *-ubyte.gz files (anywhere under $DATA) unpacked into
# $DATA/FashionMNIST/raw/, where spikelib.data (torchvision's FashionMNIST, download=False)
# reads them; torchvision would reject Debian's .gz by their MD5 sums. $1 = required|optional.
FMNIST_FILES=(train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte
              t10k-labels-idx1-ubyte)
HAVE_FMNIST=0
gunzip_to() {                          # gunzip_to FILE.gz DEST (python where gzip is missing)
  if command -v gzip > /dev/null 2>&1; then gzip -dc "$1" > "$2"
  else "$PY" -c 'import gzip, shutil, sys
shutil.copyfileobj(gzip.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$1" "$2"
  fi
}
prepare_fmnist() {
  local raw=$DATA/FashionMNIST/raw f src have=1
  for f in "${FMNIST_FILES[@]}"; do [ -s "$raw/$f" ] || have=0; done
  if [ $have = 1 ]; then
    say "Fashion-MNIST: the unpacked files are in $raw"; HAVE_FMNIST=1; record data 0; return 0
  fi
  src=$(find -L "$DATA" -name 't10k-labels-idx1-ubyte.gz' -printf '%h\n' 2>/dev/null | head -n 1)
  if [ -z "$src" ]; then
    say "no Fashion-MNIST: no *-ubyte.gz under $DATA (carry data/fashion-mnist-gz)"
    [ "$1" = required ] && record data 1
    return 1
  fi
  mkdir -p "$raw"
  for f in "${FMNIST_FILES[@]}"; do
    if ! gunzip_to "$src/$f.gz" "$raw/$f.part" 2>> "$LOGDIR/data.log"; then
      say "ERROR: could not unpack $src/$f.gz"; rm -f "$raw/$f.part"; record data 1; return 1
    fi
    mv "$raw/$f.part" "$raw/$f"
  done
  say "Fashion-MNIST: unpacked the four files from $src into $raw"
  HAVE_FMNIST=1; record data 0
}

# ------------------------------------------------------------------------------------------
# verify: every check at small sizes; a check not started 25 s before the stage's end is
# recorded as failed (out of time), so the JSON is complete before `timeout` could strike
stage_verify() {
  local t v=(--device "$DEVICE" --commit "$COMMIT" --out "$RES")
  tiny && v+=(--tiny --compile-backend eager)
  t=$(left)
  run_step verify "$t" "$PY" gpu/verify.py "${v[@]}" --max-seconds $((t - 25 > 5 ? t - 25 : 5))
  if ! tail -n 1 "$STEPS" | grep -q $'^verify\t0\t'; then
    VERIFY_FAILED=1
    say "VERIFY FAILED: see verify.log and $RES/verify-*.json before trusting this call"
  fi
}
VERIFY_FAILED=0

# ------------------------------------------------------------------------------------------
stage_bench() {
  prepare_fmnist optional
  local c=(--device "$DEVICE" --commit "$COMMIT" --out "$RES")
  local ts=(--lengths 1024 8192 --repeats 3 --lif-repeats 1 --max-seconds 48 --compile frssm)
  tiny && ts=(--lengths 16 32 --lif-max-length 32 --batch 2 --repeats 1 --lif-repeats 1
              --models s4d frssm lif --max-seconds 30 --compile frssm --compile-backend eager)
  run_step train_step 60 "$PY" benchmarks/train_step.py "${c[@]}" "${ts[@]}"
  local pv=(--lengths 1024 16384 --serial-max-length 1024 --repeats 3
            --refractory-min-time 0.1)
  tiny && pv=(--lengths 8 16 --serial-max-length 8 --repeats 1 --refractory-shape 2 40 3
              --refractory-R 1 3 --refractory-min-time 0.01)
  run_step parallel_vs_serial 30 "$PY" benchmarks/parallel_vs_serial.py "${c[@]}" "${pv[@]}"
  local sc=(--max-seconds 5)
  tiny && sc=(--profile smoke --d-model 8 --n-layers 1 --d-state 4 --n-train 100 --batch 8
              --steps 1)
  run_step scifar_epoch 30 "$PY" benchmarks/scifar_epoch.py "${c[@]}" "${sc[@]}"
  # data parallel on this device: one process, NCCL on CUDA (gloo on CPU); the result stays
  # with the logs (a check of the launcher, not a result of the book)
  local tr=(--model frssm --dataset fmnist --profile full --epochs 1 --limit-train 1280
            --limit-eval 256)
  tiny && tr=(--model frssm --dataset fmnist --profile smoke --epochs 1 --limit-train 64
              --limit-eval 32 --set d_model=8 --set n_layers=1 --set d_state=4)
  if [ $HAVE_FMNIST = 1 ]; then tr+=(--data-root "$DATA"); else tr+=(--synthetic); fi
  run_step torchrun_world1 25 "$PY" -m torch.distributed.run --standalone --nproc_per_node=1 \
    -m spikelib.train "${tr[@]}" --device "$DEVICE" --commit "$COMMIT" --threads 1 \
    --out "$WORK/runbook-torchrun" --results "$LOGDIR/torchrun" --run-name torchrun-world1 \
    --overwrite --no-progress --dist-timeout 60
}

# ------------------------------------------------------------------------------------------
read -ra FM_MODELS <<< "${FM_MODELS-s4d frssm pssm ddsn sif}"
read -ra FM_REFRACTORY <<< "${FM_REFRACTORY-0 1 4 8}"
FM_LIF=${FM_LIF:-1}
if tiny; then e=(1 2); else e=(5 20); fi
FM_MIN_EPOCHS=${FM_MIN_EPOCHS:-${e[0]}}
FM_MAX_EPOCHS=${FM_MAX_EPOCHS:-${e[1]}}

stage_fmnist() {
  prepare_fmnist required || return 0
  local prof=full
  tiny && prof=smoke
  local common=(--dataset fmnist --profile "$prof" --seed 0 --device "$DEVICE"
                --commit "$COMMIT" --data-root "$DATA" --results "$RES" --out "$WORK/fmnist"
                --overwrite --no-progress --threads 1)
  tiny && common+=(--limit-train 128 --limit-eval 64 --set d_model=8 --set n_layers=1
                   --set d_state=4)
  rm -rf "$WORK/fmnist"                 # runs start fresh: complete runs, never resumed
  export OMP_NUM_THREADS=1              # one CPU thread per process: up to ten at once
  local pdir=$LOGDIR/probe n m r names=()
  n=$(( ${#FM_MODELS[@]} + ${#FM_REFRACTORY[@]} + (FM_LIF == 1 ? 1 : 0) ))
  local pa=(--sync "$pdir/sync" --expect "$n" --barrier-timeout 60)
  if tiny; then pa+=(--warmup 1 --steps 3 --eval-batches 1); fi
  local b=()                           # phase B: the main runs alone, if anything else probes
  [ "$n" -gt ${#FM_MODELS[@]} ] && b=(--phase-b $(( ${#FM_MODELS[@]} + ${#FM_REFRACTORY[@]} )))
  probe() {                            # probe NAME ROLE [probe flags] -- [train args]
    local name=$1 role=$2; shift 2
    run_step "probe-$name" 100 "$PY" gpu/probe.py --name "$name" --role "$role" \
      --report "$pdir/$name.json" --launched "$(date +%s.%N)" "${pa[@]}" "$@"
  }
  for m in "${FM_MODELS[@]}"; do
    names+=("fmnist-$m-$prof-s0")
    probe "fmnist-$m-$prof-s0" main "${b[@]}" -- --model "$m" \
      --run-name "fmnist-$m-$prof-s0" "${common[@]}" &
  done
  for r in "${FM_REFRACTORY[@]}"; do
    names+=("fmnist-frssm-R$r-$prof-s0")
    probe "fmnist-frssm-R$r-$prof-s0" ablation -- --model frssm --set "refractory=$r" \
      --run-name "fmnist-frssm-R$r-$prof-s0" "${common[@]}" &
  done
  if [ "$FM_LIF" = 1 ]; then
    names+=("fmnist-lif-$prof-s0")
    probe "fmnist-lif-$prof-s0" lif --warmup 1 --steps 3 --eval-batches 1 --max-seconds 20 \
      -- --model lif --run-name "fmnist-lif-$prof-s0" "${common[@]}" &
  fi
  wait
  rm -rf "$pdir/sync"
  local train_end=$((STAGE_END - 35))   # after it: summary, packing
  run_step plan 30 "$PY" gpu/plan.py plan --probes "$pdir" \
    --expected "${names[@]}" --available $((train_end - $(date +%s) - 3)) \
    --min-epochs "$FM_MIN_EPOCHS" --max-epochs "$FM_MAX_EPOCHS" --out "$LOGDIR/plan"
  tail -n +2 "$LOGDIR/plan.log" | tee -a "$SUMMARY"
  local f a
  for f in "$LOGDIR"/plan/*.args; do
    [ -f "$f" ] || continue
    mapfile -t a < "$f"
    run_step "train-$(basename "$f" .args)" $((train_end - $(date +%s))) \
      "$PY" -m spikelib.train "${a[@]}" &
  done
  wait
  [ -f "$LOGDIR/plan/plan.json" ] || return 0
  DEADLINE=$((STAGE_END - 5)) run_step summary 30 "$PY" gpu/plan.py summary \
    --plan-dir "$LOGDIR/plan" --results "$RES" --work "$WORK/fmnist" \
    --weights-out "$STAGING/weights" --commit "$COMMIT" --device "$DEVICE" --profile "$prof" \
    --budget "$(budget_of fmnist)" --since "$START"
  tail -n +2 "$LOGDIR/summary.log" | tee -a "$SUMMARY"
}

# ------------------------------------------------------------------------------------------
pack() {
  local tarball=$OUT/spikelib-$NAME.tar.gz size
  mkdir -p "$STAGING/results" "$STAGING/runs/runbook"
  find "$RES" -maxdepth 1 -name '*.json' -newer "$LOGDIR/.start" \
    -exec cp -p {} "$STAGING/results/" \;
  say "call $NAME finished its steps in $(( $(date +%s) - START )) s of its $BUDGET;" \
    "packing $tarball"
  cp -rp "$LOGDIR" "$STAGING/runs/runbook/"
  tar -czf "$tarball" -C "$STAGING" .
  size=$(stat -c %s "$tarball")
  if [ "$size" -gt $((15 * 1024 * 1024)) ]; then
    split -b 15M -d -a 1 "$tarball" "$tarball.part-" && rm -f "$tarball"
    echo "the tar is $size bytes: split into parts; join them with cat" | tee -a "$SUMMARY"
  fi
  tar -tzvf "$tarball" 2> /dev/null | awk '$6 ~ /^\.\/(results|weights)\// {print $3, $6}' || true
  ls -l "$OUT"
}

show_logs() {   # the tail of every log (the device tool returns the last 12,000 characters)
  local f n
  for f in "$LOGDIR"/*.log; do
    [ -f "$f" ] && [ "$(basename "$f")" != env.log ] || continue   # env: in the summary
    n=$1
    [ "$(basename "$f")" = verify.log ] && n=12                     # one line per check
    echo "===== $(basename "$f")"; tail -n "$n" "$f"
  done
  echo "===== steps (name, exit status, seconds)"; cat "$STEPS"
  echo "===== summary"; cat "$SUMMARY"
}

say "call $NAME: budget $BUDGET s = $(for s in "${STAGES[@]}"; do printf '%s %s + ' "$s" \
  "$(budget_of "$s")"; done | sed 's/ + $//') (packing in the last $PACK_S s)"
env_check
for s in "${STAGES[@]}"; do run_stage "$s"; done
pack
show_logs 3
rm -rf "$STAGING"
[ "$VERIFY_FAILED" = 1 ] && echo "VERIFY FAILED: the CUDA path did not pass every check" \
  "(runs/runbook/$STAMP/verify.log, results/verify-*.json)"
if awk -F'\t' '$2 != "0" {bad = 1} END {exit !bad}' "$STEPS"; then
  echo "call $NAME: some steps failed, timed out or were skipped (see above)"; exit 1
fi
echo "call $NAME: every step succeeded in $(( $(date +%s) - START )) s"

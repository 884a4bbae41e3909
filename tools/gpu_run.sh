#!/usr/bin/env bash
# One step of a profile on a lent GPU machine: the ONE command a device call runs.
#
#   OUT=... bash tools/gpu_run.sh PROFILE [ONLY...]        e.g.  bash tools/gpu_run.sh quick 00 02
#
# From the repo root of the copied working tree (carry: data/offline .whl .carry), it
#   1. installs the wheels in .whl/ (papermill, ipykernel, grad-cam; skipped when .whl/ is absent),
#   2. unpacks every bundle carried in .carry/ (θ_o and earlier commands' results) into place,
#   3. runs `python -m fvlib.run PROFILE --only ONLY...` under `timeout`, within BUDGET_S seconds
#      for the whole script (default 540; RESERVE_S=60 of them kept for packing), teeing a log,
#   4. ALWAYS (trap on exit, failure or timeout included) first stops every process of the run
#      (fvlib.run, its papermill kernel and the kernel's workers: found by a tag in their
#      environment, since jupyter_client starts each kernel in its own session, out of reach of
#      `timeout`'s process-group kill), then packs into $OUT, at most 8 files:
#        gpu_run.log, results.partNN + results.json (figures/P, runs/P, cache records, manifests,
#        vectors; if that does not fit: without runs/, then the cache part alone), and, when θ_o was
#        trained in this command, theta.partNN + theta.json (ResNet-18: 3 parts of <= 15 MiB),
#   5. prints one line "[gpu_run] SUMMARY ...".
# Env: OUT (required on the device; default /tmp/gpu_run_out), BUDGET_S, RESERVE_S, MAX_MB (part
# size, default 15), PACK_THETA (auto: only if trained here | 1: always | 0: never), THETA_CAP_MB
# (default 50: VGG-16-BN's 58 MiB θ_o cannot be carried back anyway), PYTHON (default python3),
# PARAMS (notebook parameters for fvlib.run -p, space-separated NAME=VALUE, e.g. 'SCENARIOS=["classwise"]').
# Exit: 0 all notebooks ran, 1 a notebook or the setup failed, 2 the budget ran out.
set -uo pipefail
T0=$SECONDS
PROFILE=${1:?usage: OUT=DIR bash tools/gpu_run.sh PROFILE [ONLY...]}
shift
ONLY=("$@")
PARAM_ARGS=()
for kv in ${PARAMS:-}; do PARAM_ARGS+=(-p "$kv"); done
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
ROOT=$(pwd -P)  # as fvlib resolves its ROOT
OUT=${OUT:-/tmp/gpu_run_out}
BUDGET_S=${BUDGET_S:-540}
RESERVE_S=${RESERVE_S:-60}
MAX_MB=${MAX_MB:-15}
PACK_THETA=${PACK_THETA:-auto}
THETA_CAP_MB=${THETA_CAP_MB:-50}
PY=${PYTHON:-python3}
MAX_FILES=8
RETURN_MIB=63  # the device returns 64 MiB at most; keep 1 MiB for the log
export PYTHONUNBUFFERED=1
# the notebooks swap in the smoke profile under CI; fvlib's paths must be the repo's (what we pack)
unset CI FVLIB_CACHE FVLIB_FIGURES FVLIB_DATA FVLIB_ROOT
mkdir -p "$OUT" || exit 1
OUT=$(cd "$OUT" && pwd)
LOG="$OUT/gpu_run.log"
exec > >(tee -a "$LOG") 2>&1
TEE_PID=$!

STATUS="setup"   # setup -> running -> ok | failed | timeout
RUN_RC=""
RUN_S=0
THETA_NOTE="none"
MODELS_BEFORE=""
RUN_PID=""
RESULTS_NOTE="none"
RUN_TAG="gpu_run-$$-$RANDOM$RANDOM"  # in the environment of the run's processes only (see stop_run)
say() { echo "[gpu_run $(( SECONDS - T0 ))s] $*"; }
nparts() { echo "$(ls "$OUT/$1".part* 2>/dev/null | wc -l) part(s)"; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }

# θ_o's cache path, asked of fvlib itself: train_original with the cache lookup intercepted
# (no training, no write); needs the decoded data, which the run left in data/cache.
theta_path() {
  local lim=$(( BUDGET_S + 30 - (SECONDS - T0) ))  # stay inside the device call's limit
  [ "$lim" -gt 120 ] && lim=120
  [ "$lim" -lt 20 ] && lim=20
  timeout "$lim" "$PY" - "$PROFILE" <<'EOF'
import sys
from fvlib import config, train
from fvlib.paths import cache_dir

class Found(Exception):
    pass

def spy(name, key, compute):
    raise Found(cache_dir() / f"{name}-{key}.safetensors")

train.cached_tensors = spy
prof = config.get_profile(sys.argv[1])
try:
    train.train_original(prof.model, config.load_data(prof), prof.train, progress=False)
except Found as found:
    print(found.args[0])
EOF
}

# pids of the processes started by the run: every one inherits FVLIB_RUN_TAG, the papermill kernel
# and its worker processes too, even after a killed parent leaves them to init in a new session.
run_pids() {
  local f pid
  for f in /proc/[0-9]*/environ; do
    pid=${f#/proc/}; pid=${pid%/environ}
    grep -qzxF "FVLIB_RUN_TAG=$RUN_TAG" "$f" 2>/dev/null && echo "$pid"
  done
}

# A budget-out kills fvlib.run but not its kernel, which would go on writing records and figures
# while they are packed: TERM every process of the run, wait up to 10 s, then KILL what is left.
stop_run() {
  local pids n
  pids=$(run_pids)
  [ -z "$pids" ] && return 0
  say "stopping $(wc -w <<<"$pids") process(es) of the run (runner, kernel, workers) before packing"
  kill -TERM $pids 2>/dev/null
  for n in $(seq 20); do
    sleep 0.5
    pids=$(run_pids)
    [ -z "$pids" ] && return 0
  done
  say "still running after 10 s: killing $pids"
  kill -KILL $pids 2>/dev/null
  sleep 0.5
}

finish() {
  local rc=$?
  trap - EXIT TERM INT
  [ "$STATUS" = "running" ] && STATUS="interrupted"
  [ "$STATUS" = "setup" ] && [ "$rc" -ne 0 ] && STATUS="failed"
  stop_run
  say "packing results into $OUT (status $STATUS)"
  local theta="" theta_bytes=0 theta_parts=0 theta_new=0
  local models_now new_models
  models_now=$(ls data/cache/model-*.safetensors 2>/dev/null)
  new_models=$(comm -13 <(sort <<<"$MODELS_BEFORE") <(sort <<<"$models_now") | grep -c . )
  if [ "$PACK_THETA" = auto ] && [ "$new_models" = 0 ]; then
    THETA_NOTE="no model trained here (θ_o carried in, or training not reached)"
  elif [ "$PACK_THETA" != 0 ]; then
    theta=$(theta_path 2>>"$LOG" | tail -1)
    if [ -n "$theta" ] && [ -f "$theta" ]; then
      theta=${theta#"$ROOT"/}
    else
      say "fvlib did not name θ_o's file; falling back to the oldest model file under the cap"
      theta=$("$PY" -c "import sys; sys.path.insert(0, 'tools'); import bundle; \
print(*bundle.theta_files('.', cap_mb=$THETA_CAP_MB), sep='\n')" 2>/dev/null | head -1)
    fi
    if [ -n "$theta" ] && [ -f "$theta" ]; then
      theta_bytes=$(stat -c %s "$theta")
      grep -qxF "$theta" <<<"$MODELS_BEFORE" || theta_new=1
      if [ "$PACK_THETA" = auto ] && [ "$theta_new" = 0 ]; then
        THETA_NOTE="carried ($theta), not packed again"; theta=""
      elif [ "$theta_bytes" -gt $(( THETA_CAP_MB * 1048576 )) ]; then
        THETA_NOTE="$theta is $(mib "$theta_bytes") MiB > THETA_CAP_MB=$THETA_CAP_MB, not packed"
        theta=""
      else
        # gzip never grows float data by more than headers: raw size bounds the part count
        theta_parts=$(( (theta_bytes + 65536) / (MAX_MB * 1048576) + 1 ))
      fi
    else
      THETA_NOTE="no θ_o model file (not trained yet?)"; theta=""
    fi
  fi
  # slots: 8 files - log - theta (parts + manifest) - results manifest
  local slots=$(( MAX_FILES - 1 - 1 ))
  local room=$RETURN_MIB
  if [ -n "$theta" ]; then
    slots=$(( slots - theta_parts - 1 ))
    room=$(( RETURN_MIB - (theta_bytes + 65536) / 1048576 - 1 ))
  fi
  if [ "$slots" -ge 1 ]; then
    if "$PY" tools/bundle.py pack --preset results --profile "$PROFILE" --out "$OUT" \
         --name results --max-mb "$MAX_MB" --max-parts "$slots" --max-total-mb "$room"; then
      RESULTS_NOTE="results: $(nparts results)"
    elif "$PY" tools/bundle.py pack --preset results --profile "$PROFILE" --out "$OUT" \
           --name results --max-mb "$MAX_MB" --max-parts "$slots" --max-total-mb "$room" \
           --exclude "runs/*"; then
      RESULTS_NOTE="results WITHOUT runs/ (did not fit), $(nparts results)"
    elif "$PY" tools/bundle.py pack --preset cache --out "$OUT" --name results \
           --max-mb "$MAX_MB" --max-parts "$slots" --max-total-mb "$room"; then
      RESULTS_NOTE="results: cache only (figures/runs did not fit), $(nparts results)"
    else
      RESULTS_NOTE="results NOT packed (see log)"
    fi
  else
    RESULTS_NOTE="results NOT packed (no file slot left)"
  fi
  if [ -n "$theta" ]; then
    if "$PY" tools/bundle.py pack --preset theta --files "$theta" --out "$OUT" --name theta \
         --max-mb "$MAX_MB" --max-parts "$theta_parts"; then
      local how="carried in"
      [ "$theta_new" = 1 ] && how="trained here"
      THETA_NOTE="$how, packed $theta ($(mib "$theta_bytes") MiB) in $(nparts theta)"
    else
      THETA_NOTE="packing $theta FAILED"
    fi
  fi
  local nfiles nbytes
  nfiles=$(find "$OUT" -type f | wc -l)
  nbytes=$(find "$OUT" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}')
  [ "$nfiles" -gt "$MAX_FILES" ] && say "WARNING: $nfiles files in $OUT, only $MAX_FILES come back"
  local code=1
  case "$STATUS" in ok) code=0 ;; timeout) code=2 ;; esac
  say "SUMMARY profile=$PROFILE only=${ONLY[*]:-all} status=$STATUS run_rc=${RUN_RC:-none}" \
      "run_s=$RUN_S total_s=$(( SECONDS - T0 )) | θ_o: $THETA_NOTE | $RESULTS_NOTE |" \
      "OUT: $nfiles/$MAX_FILES files, $(mib "$nbytes") MiB"
  exec 1>&- 2>&-
  wait "$TEE_PID" 2>/dev/null
  exit "$code"
}
trap finish EXIT
on_signal() {
  say "signal received: stopping the run"
  [ -n "$RUN_PID" ] && kill -TERM "$RUN_PID" 2>/dev/null && wait "$RUN_PID" 2>/dev/null
  RUN_S=$(( SECONDS - ${t_run:-$SECONDS} ))
  exit 143
}
trap on_signal TERM INT

say "profile=$PROFILE only=${ONLY[*]:-all} budget=${BUDGET_S}s reserve=${RESERVE_S}s root=$ROOT"
command -v nvidia-smi >/dev/null && nvidia-smi -L

if compgen -G ".whl/*.whl" >/dev/null; then
  SITE=${WHEEL_SITE:-/tmp/site}
  say "installing $(ls .whl/*.whl | wc -l) wheels from .whl/ into $SITE"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target "$SITE" .whl/*.whl || say "WARNING: wheel install failed"
  export PYTHONPATH="$SITE:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
else
  say "no .whl/: using the installed papermill/ipykernel"
  export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
fi

for manifest in .carry/*.json; do
  [ -e "$manifest" ] || continue
  name=$(basename "$manifest" .json)
  say "unpacking carried bundle $name"
  "$PY" tools/bundle.py unpack ".carry/$name".part* --to "$ROOT" || say "WARNING: bundle $name not unpacked"
done

MODELS_BEFORE=$(ls data/cache/model-*.safetensors 2>/dev/null)
"$PY" -c "import papermill, ipykernel" || { say "papermill/ipykernel not importable"; exit 1; }

left=$(( BUDGET_S - (SECONDS - T0) - RESERVE_S ))
if [ "$left" -lt 20 ]; then
  say "only ${left}s left of the budget: not running"
  STATUS="timeout"
  exit 2
fi
STATUS="running"
say "python -m fvlib.run $PROFILE ${ONLY[*]:+--only ${ONLY[*]}} ${PARAM_ARGS[*]:+${PARAM_ARGS[*]} }(wall limit ${left}s)"
t_run=$SECONDS
# in the background, so that a TERM to this script is handled at once (stop the run, then pack)
FVLIB_RUN_TAG=$RUN_TAG timeout -k 15 "$left" "$PY" -m fvlib.run "$PROFILE" ${ONLY[@]+--only "${ONLY[@]}"} \
  ${PARAM_ARGS[@]+"${PARAM_ARGS[@]}"} --timeout "$left" &
RUN_PID=$!
wait "$RUN_PID"
RUN_RC=$?
RUN_S=$(( SECONDS - t_run ))
case "$RUN_RC" in
  0) STATUS="ok" ;;
  124|137) STATUS="timeout"; say "fvlib.run stopped by the ${left}s budget" ;;
  *) STATUS="failed" ;;
esac
exit 0  # finish() (the EXIT trap) packs and sets the exit code

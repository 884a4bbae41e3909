#!/usr/bin/env bash
# The GPU session's one command: every benchmark, in order, under one wall-clock budget.
#
#   bash benchmarks/gpu_session.sh [BUDGET_SECONDS=540] [PROFILE]     (PROFILE: quick on CUDA, else smoke)
#
# Assumes the offline archive at data/offline/cifar10-jpeg.tar.xz (carried along) and starts from an
# empty fvlib cache. Each script runs under `timeout` with min(its cap, time left), so a failing or
# slow script never stops the ones after it. Everything lands in $OUT (or a temp folder when OUT is
# unset, e.g. a CPU check), as three files, refreshed after every script so a cut-short session
# still returns what finished:
#   session.log      this driver's output: versions, one SUMMARY line (or the error tail) per script
#   results.json     {"session": {...steps, rc, seconds...}, "results": {<file>: <benchmark JSON>}}
#   results.tar.gz   results/*.json (drop into benchmarks/results/) and logs/<script>.log (full output)
# Env: PYTHON (interpreter; default .venv/bin/python if present, else python3), FVBENCH_GIT_SHA
# (recorded when the tree has no .git), FVBENCH_CAP_SCALE (multiply every cap; e.g. 5 on a slow CPU).
set -u
BUDGET=${1:-540}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
START=$(date +%s)
DEADLINE=$((START + BUDGET))
RESERVE=6  # seconds kept back for the final bundle
SCALE=${FVBENCH_CAP_SCALE:-1}
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
unset CI  # fvlib forced the smoke profile when CI was set
FVBENCH_GIT_SHA=${FVBENCH_GIT_SHA:-$(git rev-parse HEAD 2>/dev/null)}
export FVBENCH_GIT_SHA  # recorded in every JSON where the tree has no .git (device copies)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/fvbench.XXXXXX")
export FVLIB_CACHE="$WORK/cache" FVBENCH_RESULTS="$WORK/results"
mkdir -p "$FVLIB_CACHE" "$FVBENCH_RESULTS" "$WORK/logs"
DEST=${OUT:-$WORK/out}
mkdir -p "$DEST"
exec > >(tee -a "$DEST/session.log") 2>&1
TEE_PID=$!
PROFILE=${2:-$("$PY" -c 'import torch; print("quick" if torch.cuda.is_available() else "smoke")' 2>/dev/null || echo smoke)}
STEPS=()  # "name rc seconds limit" per script

left() { echo $((DEADLINE - RESERVE - $(date +%s))); }

bundle() {  # results.json + results.tar.gz in DEST, each written to a temp name then renamed
  printf '%s\n' "${STEPS[@]}" > "$WORK/steps.txt"
  "$PY" - "$WORK" "$DEST" "$PROFILE" "$BUDGET" "$START" <<'EOF'
import json, os, sys, time
from pathlib import Path
work, dest, profile, budget, start = Path(sys.argv[1]), Path(sys.argv[2]), *sys.argv[3:]
num = lambda v: int(v) if v.lstrip("-").isdigit() else v  # noqa: E731
steps = [dict(zip(("script", "rc", "seconds", "limit"), map(num, line.split())))
         for line in (work / "steps.txt").read_text().splitlines() if line.strip()]
results = {}
for f in sorted((work / "results").glob("*.json")):
    try:
        results[f.name] = json.loads(f.read_text())
    except ValueError as err:
        results[f.name] = {"unreadable": str(err)}
session = {"profile": profile, "budget_seconds": int(budget), "elapsed_seconds": int(time.time()) - int(start),
           "git_sha": os.environ.get("FVBENCH_GIT_SHA") or None, "steps": steps,
           "rc_meaning": "0 ok, 124 timed out (limit), skipped: no time left, other: failed (see logs/)"}
tmp = dest / ".results.json.tmp"
tmp.write_text(json.dumps({"session": session, "results": results}, indent=1) + "\n")
os.replace(tmp, dest / "results.json")
EOF
  tar czf "$DEST/.results.tar.gz.tmp" -C "$WORK" results logs steps.txt && mv -f "$DEST/.results.tar.gz.tmp" "$DEST/results.tar.gz"
}

step() {  # step NAME CAP [ARGS...]: benchmarks/NAME.py PROFILE ARGS under timeout min(CAP*SCALE, time left)
  local name=$1 cap=$2 rest limit t0 rc dt
  shift 2
  cap=$(awk -v c="$cap" -v s="$SCALE" 'BEGIN { printf "%d", c * s }')
  rest=$(left)
  if [ "$rest" -lt 15 ]; then
    echo "== $name SKIPPED: ${rest}s left"
    STEPS+=("$name skipped 0 0")
    return
  fi
  limit=$((cap < rest ? cap : rest))
  echo "== $name $PROFILE $* (limit ${limit}s, $(date -u +%H:%M:%S))"
  t0=$(date +%s)
  # OUT unset for the scripts: only the bundle goes back (a device run returns at most 8 files)
  env -u OUT timeout -k 10 "$limit" "$PY" "benchmarks/$name.py" "$PROFILE" "$@" > "$WORK/logs/$name.log" 2>&1
  rc=$?
  dt=$(($(date +%s) - t0))
  if [ "$rc" -eq 0 ]; then
    grep '^SUMMARY' "$WORK/logs/$name.log"
  elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    echo "   timed out after ${limit}s; its JSON (if any) holds what finished. Last log lines:"
    tail -n 8 "$WORK/logs/$name.log"
  else
    tail -n 25 "$WORK/logs/$name.log"
  fi
  echo "== $name rc=$rc ${dt}s"
  STEPS+=("$name $rc $dt $limit")
  bundle
}

echo "== fvlib benchmark session: profile $PROFILE, budget ${BUDGET}s, cap scale $SCALE, python $PY"
echo "== work $WORK, results to $DEST, git ${FVBENCH_GIT_SHA:-unknown}"
"$PY" - <<'EOF'
import importlib, platform, torch
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda,
      "device", torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu")
missing = []
for mod in ("torchvision", "safetensors", "tqdm", "sklearn", "pandas", "PIL", "numpy"):
    try:
        importlib.import_module(mod)
    except ImportError:
        missing.append(mod)
print("missing packages:", missing or "none")
EOF
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader
if [ "$PROFILE" != smoke ] && [ ! -f data/offline/cifar10-jpeg.tar.xz ]; then
  echo "WARNING: data/offline/cifar10-jpeg.tar.xz is missing: fvlib will search data/ and ../shared/data"
fi

# Order: data first (every later script needs it decoded), then θ_o (cached for all that follow),
# then the speed issue's questions (profile, FV s/epoch, authors' loop), then baselines, the θ_o
# curve and the study, which take whatever time is left and write partial JSON as they go.
step decode_speed 60 --keep
step train_speed 90
step profile_fv 90
step forget_vector_speed 75 5 --batched-epochs 2
step authors_loop 60 --epochs 3
step baseline_speed 150
curve=$(($(left) - 110))  # leave the study at least ~110 s
[ "$curve" -gt 200 ] && curve=200
if [ "$curve" -ge 40 ]; then
  step theta_o_curve "$curve" --budget-seconds $((curve - 10))
else
  echo "== theta_o_curve SKIPPED: ${curve}s for it"; STEPS+=("theta_o_curve skipped 0 0")
fi
study=$(left)
step scenario_speed "$study" --trials 1 --budget-seconds $((study > 40 ? study - 30 : 10))

bundle
rm -rf "$FVLIB_CACHE"  # decoded data and models: hundreds of MB, not part of the results
echo "== done in $(($(date +%s) - START))s; steps (script rc seconds limit):"
printf '   %s\n' "${STEPS[@]}"
echo "== files: $(ls "$DEST" | tr '\n' ' ')(in $DEST)"
exec 1>&- 2>&-
wait "$TEE_PID" 2>/dev/null  # let tee finish session.log before the caller reads it

#!/usr/bin/env bash
# Do a sweep's trials still follow one another when Ray's dashboard (its State API) is gone?
# Tune stops a trial by killing it, often before its Train controller removes its workers'
# placement group; Ray's own cleaner then needs the State API, and without sweep.py's
# FreeOrphanedResources the next trial waited for those CPUs forever (docs/BENCHMARKS.md).
# Each repeat: a 2-trial sweep on the offline digits, 2 workers per trial (each trial a Ray Train
# run: one-worker trials start none, so they hold no placement group), whose dashboard is killed once
# its first trial starts; "ok" if it finishes within LIMIT seconds, else "hung".
#
#     benchmarks/sweep_without_dashboard.sh [REPEATS] [LIMIT]
set -u
repeats=${1:-5}; limit=${2:-200}
py=${PYTHON:-python}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat > "$work/space.yaml" <<'YAML'
sweep: {trials: 2, workers: 2, seed: 3}
fixed: {dataset: digits, limit: 64, widths: [8, 16, 32], dense: 32, gen_width: 8, batch_size: 16,
        augment: false, epochs_f: 1, epochs_mask: 1, epochs_adv: 1}
lr_f: {loguniform: [1.0e-4, 1.0e-2]}
ascent_per_descent: {choice: [0.5, 1, 2]}
YAML
ok=0
for i in $(seq "$repeats"); do
  d="$work/$i"; mkdir -p "$d"
  PYTHONUNBUFFERED=1 timeout "$limit" $py -m platform.sweep --space "$work/space.yaml" --name nodash \
      --storage-path "$d/ray" --tracking-uri "sqlite:///$d/mlflow.db" > "$d/out" 2> "$d/err" &
  sweep=$!
  for _ in $(seq "$limit"); do grep -q " started: " "$d/out" && break; sleep 1; done
  dash=$(pgrep -P "$(pgrep -P "$sweep")" -f dashboard/dashboard.py)   # the sweep's child (under timeout)
  [ -n "$dash" ] && kill -9 $dash || echo "repeat $i: no dashboard found to kill"
  if wait "$sweep"; then ok=$((ok + 1)); echo "repeat $i: ok"; else echo "repeat $i: hung (or failed)"; tail -3 "$d/out"; fi
done
echo "$ok of $repeats sweeps finished without their dashboard"

#!/usr/bin/env bash
# Run the pipeline offline on generated sample data, through real dvc, in a copy of the project.
set -euo pipefail

# Offline settings: generated data (two classes, cats and dogs; 2x500 validation images, so the test split has
# 200), 96 px images, and instead of ImageNet's weights (no network) a MobileNetV2 pretrained here on eight other
# drawn animals (pretrained/mobilenet_v2_animals.json says how; README, "The demo"). Set with DVC's own -S logic
# (hydra overrides), then `dvc repro`: a first run through `dvc exp run` prints DVC's "No file hash info found"
# warning per cached output (no dvc.lock yet to restore them from; docs/troubleshooting.md).
demo_params=(
  data.source=sample
  data.sample_train_per_class=200
  data.sample_validation_per_class=500
  encode.image_size=96
  baseline.image_size=96
  baseline.epochs=8
  model.weights=pretrained/mobilenet_v2_animals.weights.h5
  model.image_size=96
  transfer.augment.flip=none
  transfer.augment.rotation=0.0
  transfer.epochs=20
  transfer.learning_rate=0.001
  finetune.epochs=10
  finetune.lr_factor=0.3
)

usage() {
  cat <<'EOF'
usage: scripts/demo.sh [--fresh] DIR [STAGE...] [-S key=value...]      (make demo runs: scripts/demo.sh demo)

Makes DIR a copy of this project (its committed and new files; not data/, models/, .venv/) with a git + DVC
history of its own, sets the demo's params (listed below, then yours: later -S win), runs `dvc repro [STAGE...]`
and commits the result. Your own params.yaml, data/ and models/ are not touched. Inside DIR afterwards:

  dvc exp run -S model.fine_tune_at=120      an experiment on top of the demo run
  dvc exp diff; dvc metrics diff; dvc params diff; dvc plots diff      it against the demo run

DIR must be new, empty, or an earlier demo workspace. One holding your own work (experiments, commits or
changes of yours) is kept unless --fresh says to replace it.

Back to the demo run after trying things in DIR: git reset --hard && git clean -fd && dvc checkout --force

The demo's params:
EOF
  printf '  -S %s\n' "${demo_params[@]}"
}

fresh=0
dir=""
targets=()
overrides=()
while [ $# -gt 0 ]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --fresh) fresh=1; shift ;;
    -S) overrides+=("${2:?-S needs key=value}"); shift 2 ;;
    -S*) overrides+=("${1#-S}"); shift ;;
    -*) usage >&2; exit 2 ;;
    *) if [ -z "$dir" ]; then dir=$1; else targets+=("$1"); fi; shift ;;
  esac
done
if [ -z "$dir" ]; then usage >&2; exit 2; fi
here=$(cd "$(dirname "$0")/.." && pwd)
# The project's venv first on PATH (make demo does the same), so dvc and the stages' python are found.
if [ -x "$here/.venv/bin/dvc" ]; then export PATH="$here/.venv/bin:$PATH"; fi

marker=.demo-workspace
if [ -e "$dir" ] && [ -n "$(ls -A "$dir")" ]; then
  if [ ! -e "$dir/$marker" ]; then
    echo "error: $dir exists and is not a demo workspace made by this script (no $marker in it); choose another DIR" >&2
    exit 2
  fi
  # The user's work in an earlier demo workspace: commits after the demo's two (on any branch), experiments
  # (DVC keeps them, queued ones too, under refs/exps), and changes or new files once the demo run was committed
  # (before that, they are the demo's own, from a run that failed or was interrupted).
  own=""
  commits=$(git -C "$dir" rev-list --count --branches 2>/dev/null || echo 0)
  [ "$commits" -gt 2 ] && own+=" $((commits - 2)) commit(s) after the demo run;"
  # Finished experiments are refs/exps/<2 hex>/<38 hex>/<name>; queued ones are entries of refs/exps/celery/stash.
  experiments=$(git -C "$dir" for-each-ref --format='%(refname)' refs/exps 2>/dev/null |
    grep -cE '^refs/exps/[0-9a-f]{2}/[0-9a-f]{38}/' || true)
  [ "$experiments" -gt 0 ] && own+=" $experiments experiment(s);"
  queued=$(git -C "$dir" reflog show --format=%H refs/exps/celery/stash 2>/dev/null | grep -c . || true)
  [ "$queued" -gt 0 ] && own+=" $queued queued experiment(s);"
  if [ "$commits" -ge 2 ] && [ -n "$(git -C "$dir" status --porcelain 2>/dev/null)" ]; then
    own+=" uncommitted changes or new files;"
  fi
  if [ -n "$own" ] && [ "$fresh" = 0 ]; then
    echo "error: $dir holds your work:$own kept. Compare in it (cd $dir; dvc exp show), choose another DIR, or replace it: scripts/demo.sh --fresh $dir (make demo DEMO_ARGS=--fresh)" >&2
    exit 2
  fi
fi
rm -rf "$dir"
mkdir -p "$dir"
touch "$dir/$marker"  # first: a copy interrupted below still leaves a workspace this script may replace
dest=$(cd "$dir" && pwd)
# Tracked files plus new files not yet committed, without anything git ignores (data, models, .venv) and
# without files deleted but not yet committed.
(cd "$here" && git ls-files -z --cached --others --exclude-standard |
  while IFS= read -r -d '' file; do [ -e "$file" ] && printf '%s\0' "$file"; done |
  xargs -0 cp --parents -t "$dest")
cd "$dest"
git init -q
printf '/%s\n/dvc_plots/\n' "$marker" >> .git/info/exclude  # dvc_plots: what `dvc plots show` writes
commit() { git add -A && git -c user.name=demo -c user.email=demo@localhost commit -q -m "$1"; }
commit "demo workspace"
dvc config --local core.autostage true  # dvc stages dvc.lock itself, instead of a hint to `git add` it (not committed)

python - "${demo_params[@]}" ${overrides[@]+"${overrides[@]}"} <<'PY'
import sys
from dvc.utils.hydra import apply_overrides  # what `dvc exp run -S` uses
try:
    apply_overrides("params.yaml", sys.argv[1:])
except Exception as exc:  # noqa: BLE001  (a typo'd key or bad syntax: one line, as dvc itself says it)
    sys.exit(f"error: -S: {exc}")
PY
dvc repro ${targets[@]+"${targets[@]}"}
commit "demo run"

[ -f metrics/eval.json ] || exit 0  # a run that stopped at an earlier stage
echo
echo "Test split, per model (the headline: dvc metrics show; the report: $dir/reports/report.md):"
python - <<'PY'
import json
from stages.lib import intervals
m = json.load(open("metrics/eval.json"))
def show(value):
    return "n/a" if value is None else f"{value:.3f}"
for name in ("baseline", "transfer", "finetune"):
    headline = json.load(open(f"metrics/test/{name}.json"))  # what `dvc metrics show` prints, by its names
    accuracy = f"{show(headline['accuracy'])} ({show(m[name + '.accuracy.low'])}-{show(m[name + '.accuracy.high'])})"
    print(f"  {name:9s} accuracy {accuracy}  " + "  ".join(f"{key} {show(headline[key])}" for key in ("macro.f1", "roc_auc")))
images = m["finetune.test_images"]
gain, kept = m["transfer.accuracy"] - m["baseline.accuracy"], m["finetune.accuracy"] - m["transfer.accuracy"]
print(f"Transfer learning: transfer - baseline {gain:+.3f} (demo target >= +0.05), "
      f"finetune - transfer {kept:+.3f} (target >= -0.02), on {images} test images")
floor = intervals.smallest_significant_change()
print(f"In parentheses: 95% intervals. Between two runs, a change in test accuracy under {floor / images:.3f} "
      f"({floor} images) is inside the noise; the report says when a larger one is outside it")
chosen = json.load(open("metrics/export.json"))
print(f"The model: {chosen['model']}, chosen by {chosen['reason']}; in models/export/, what predict uses")
PY

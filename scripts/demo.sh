#!/usr/bin/env bash
# Run the pipeline offline on generated sample data, through real dvc, in a throwaway copy of the project.
#
#   scripts/demo.sh DIR [STAGE...] [-S key=value...]      (make demo runs: scripts/demo.sh demo)
#
# DIR becomes its own git + DVC project (a copy of this one's files, without data/ or models/), with
# params.yaml switched to the `sample` source via `dvc exp run -S`, so your own workspace is untouched.
# Afterwards try, inside DIR: dvc metrics show, dvc plots show, dvc exp show, dvc exp run -S model.fine_tune_at=120
set -euo pipefail
dir=${1:?usage: scripts/demo.sh DIR [STAGE...] [-S key=value...]}
shift
here=$(cd "$(dirname "$0")/.." && pwd)
# The project's venv first on PATH (make demo does the same), so dvc and the stages' python are found.
if [ -x "$here/.venv/bin/dvc" ]; then export PATH="$here/.venv/bin:$PATH"; fi

# DIR is wiped first, so only a folder this script made (it holds the marker), an empty or a new one will do.
marker=.demo-workspace
if [ -e "$dir" ] && [ -n "$(ls -A "$dir")" ] && [ ! -e "$dir/$marker" ]; then
  echo "error: $dir exists and is not a demo workspace made by this script (no $marker in it); choose another DIR" >&2
  exit 2
fi
rm -rf "$dir"
mkdir -p "$dir"
dest=$(cd "$dir" && pwd)
# Tracked files plus new files not yet committed, without anything git ignores (data, models, .venv) and
# without files deleted but not yet committed.
(cd "$here" && git ls-files -z --cached --others --exclude-standard |
  while IFS= read -r -d '' file; do [ -e "$file" ] && printf '%s\0' "$file"; done |
  xargs -0 cp --parents -t "$dest")
cd "$dest"
git init -q
touch "$marker"
echo "/$marker" >> .git/info/exclude
git add -A
git -c user.name=demo -c user.email=demo@localhost commit -q -m "demo workspace"

# Offline settings: generated data and no ImageNet weights (they cannot be downloaded here), smaller images.
# From random weights (BatchNorm statistics calibrated on train images, model.calibration_images) the frozen
# base's features hardly separate the classes: transfer stays near chance, and fine-tuning, which trains the
# top of the base, learns a little (README, "The demo"). Augmentation is off because with it neither learns
# within these epochs, and off it lets transfer train the head on cached features. 250 validation images per
# class give a 100-image test split. Later -S options override earlier ones, so the caller's "$@" comes last.
dvc exp run \
  -S data.source=sample \
  -S data.sample_train_per_class=200 \
  -S data.sample_validation_per_class=250 \
  -S encode.image_size=96 \
  -S baseline.image_size=96 \
  -S baseline.epochs=8 \
  -S model.weights=none \
  -S model.image_size=96 \
  -S transfer.augment.flip=none \
  -S transfer.augment.rotation=0.0 \
  -S transfer.epochs=20 \
  -S transfer.learning_rate=0.001 \
  -S finetune.epochs=10 \
  -S finetune.lr_factor=0.3 \
  "$@"

[ -f metrics/eval.json ] || exit 0  # a run that stopped at an earlier stage
echo
echo "Test split, per model (all metrics: dvc metrics show; the report: $dir/reports/report.md):"
python - <<'PY'
import json
m = json.load(open("metrics/eval.json"))
for name in ("baseline", "transfer", "finetune"):
    print(f"  {name:9s} accuracy {m[name + '.accuracy']:.3f}  f1 {m[name + '.f1']:.3f}  roc_auc {m[name + '.roc_auc']:.3f}")
PY

"""split stage: data/raw -> data/splits/{train,val,test,skipped}.csv and metrics/data.json.

python -m stages.split
"""

from __future__ import annotations

import argparse
from pathlib import Path

from stages.lib import atomic, params
from stages.lib.cli import run
from stages.lib.splitting import SPLITS, make_splits

PARAMS = ("seed", "split.test_fraction")  # keep in step with this stage's params: in dvc.yaml


def main(argv: list[str] | None = None) -> params.StageParams:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--raw", type=Path, default=Path("data/raw"))
    parser.add_argument("--out", type=Path, default=Path("data/splits"))
    parser.add_argument("--metrics", type=Path, default=Path("metrics/data.json"))
    parser.add_argument("--params", type=Path, default=params.PARAMS_FILE)
    args = parser.parse_args(argv)
    p = params.for_stage(PARAMS, args.params)

    splits = make_splits(args.raw, test_fraction=p.split.test_fraction, seed=p.seed)
    with atomic.replace_dir(args.out) as tmp:
        for split in SPLITS:
            splits.frames[split].to_csv(tmp / f"{split}.csv", index=False, lineterminator="\n")
        splits.skipped.to_csv(tmp / "skipped.csv", index=False, lineterminator="\n")
    metrics = splits.metrics()
    atomic.write_json(args.metrics, metrics)

    print(
        "split: "
        + ", ".join(f"{s} {metrics[f'{s}.total']}" for s in SPLITS)
        + f"; skipped {metrics['skipped.total']}; duplicates removed "
        + str(sum(splits.duplicates_removed.values()))
    )
    return p


if __name__ == "__main__":
    run(main)

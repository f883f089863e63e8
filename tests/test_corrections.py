"""corrections.csv: each row checked with the line it is on, merged (the later decision wins), applied by content
(a renamed or re-packed image keeps its row, other bytes at its path never take it), and through the split stage:
a relabel moves no image between splits, a drop is skipped with its line, a keep is marked, every row's state is
listed and counted. Class names as users name them."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from stages import split as split_stage
from stages.lib import corrections
from stages.lib.corrections import Correction, CorrectionsError
from stages.lib.file_lists import SplitError, make_splits, read_skipped, read_split
from stages.lib.files import sha256_file
from tests.conftest import dvc_args, make_raw_tree

CLASSES = ["None", "macro", "猫"]
HEADER = "path,sha256,action,label,note\n"


def digest(n: int) -> str:
    return f"{n:064x}"


def parse(body: str, classes: list[str] | None = CLASSES) -> list[Correction]:
    return corrections.parse(HEADER + body, "corrections.csv", classes)


def test_rows_are_read_with_their_lines_and_hostile_class_names():
    rows = parse(f'train/None/a.jpg,{digest(1)},relabel,猫,"a cat, clearly"\ntrain/macro/b.jpg,{digest(2)},keep,,\n')
    assert [(r.line, r.action, r.label, r.note) for r in rows] == [
        (2, "relabel", "猫", "a cat, clearly"), (3, "keep", "", "")
    ]  # fmt: skip
    assert parse(f"p.jpg,{digest(3)},relabel,None,\n")[0].label == "None"  # a class, not a missing value
    nfd = "cafe\u0301"
    assert parse(f"p.jpg,{digest(3)},relabel,{nfd},\n", ["café"])[0].label == "café"  # macOS writes NFD


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (f"p.jpg,{digest(1)},move,,", "line 2: action 'move' is not one of relabel, drop, keep"),
        (f"p.jpg,{digest(1)},relabel,,", "line 2: relabel needs a label"),
        (f"p.jpg,{digest(1)},relabel,dog,", "line 2: relabel to 'dog', which is not a class of the dataset ('None'"),
        (f"p.jpg,{digest(1)},keep,macro,", "line 2: a label is for relabel only; keep takes none"),
        ("p.jpg,abc,drop,,", "line 2: sha256 'abc' is not 64 hexadecimal digits"),
        (f",{digest(1)},drop,,", "line 2: no path"),
        (f"a.jpg,{digest(1)},drop,,\nb.jpg,{digest(1)},keep,,", "lines 2 and 3 disagree about one image (b.jpg"),
        (f"p.jpg,{digest(1)},drop,,,extra", "line 2 has more fields than the header"),
    ],
)
def test_a_row_that_cannot_be_meant_is_one_line_naming_it(body: str, message: str):
    with pytest.raises(CorrectionsError) as err:
        parse(body + "\n")
    assert str(err.value).startswith("corrections.csv: ") and message in str(err.value)


def test_the_header_is_checked_and_rows_agreeing_about_an_image_are_one():
    with pytest.raises(CorrectionsError, match="line 1 must name the columns path, sha256, action, label, note"):
        corrections.parse("file,action\n", "corrections.csv", CLASSES)
    with pytest.raises(CorrectionsError, match="unknown column 'labels'"):
        corrections.parse("path,sha256,action,labels\n", "corrections.csv", CLASSES)
    assert corrections.parse("\ufeffpath,sha256,action\n", "c.csv", CLASSES) == []  # Excel's byte-order mark
    twice = parse(f"a.jpg,{digest(1)},drop,,\na.jpg,{digest(1)},drop,,\n")
    assert len(twice) == 1


def test_a_missing_file_says_how_to_get_it_back(tmp_path: Path):
    with pytest.raises(CorrectionsError) as err:
        corrections.read(tmp_path / "corrections.csv")
    assert "missing; it holds your decisions about images" in str(err.value)
    assert "path,sha256,action,label,note" in str(err.value)


def test_a_later_decision_about_an_image_replaces_the_earlier():
    existing = parse(f"a.jpg,{digest(1)},keep,,\nb.jpg,{digest(2)},drop,,\n")
    new = parse(f"a.jpg,{digest(1)},relabel,macro,\nc.jpg,{digest(3)},relabel,None,\nb.jpg,{digest(2)},drop,,\n")
    merged, added, replaced = corrections.merge(existing, new)
    assert [(r.path, r.action, r.label) for r in merged] == [
        ("a.jpg", "relabel", "macro"), ("b.jpg", "drop", ""), ("c.jpg", "relabel", "None")
    ]  # fmt: skip
    assert (added, replaced) == (1, 1)
    assert corrections.parse(corrections.to_csv(merged), "x", CLASSES) == [r.__class__(**{**r.__dict__, "line": i + 2})
                                                                           for i, r in enumerate(merged)]  # fmt: skip


def images() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "path": ["train/None/a.jpg", "train/None/b.jpg", "train/macro/c.jpg", "val/macro/d.jpg", "renamed/e.jpg"],
            "label": ["None", "None", "macro", "macro", "猫"],
            "sha256": [digest(1), digest(2), digest(3), digest(1), digest(5)],  # d is a copy of a
        }
    )


def test_a_row_applies_by_content_and_every_row_s_state_is_told():
    rows = parse(
        f"train/None/a.jpg,{digest(1)},relabel,猫,\n"  # applied, to a and to its copy d
        f"train/macro/c.jpg,{digest(3)},drop,,\n"  # applied
        f"old/e.jpg,{digest(5)},keep,,\n"  # moved: its bytes are at renamed/e.jpg
        f"train/None/b.jpg,{digest(9)},relabel,macro,\n"  # changed: other bytes at its path now
        f"gone/x.jpg,{digest(8)},drop,,\n"  # gone
    )
    applied = corrections.apply(images(), rows)
    by_path = applied.images.set_index("path")
    assert by_path.loc["train/None/a.jpg", "label"] == "猫" and by_path.loc["val/macro/d.jpg", "label"] == "猫"
    assert (
        by_path.loc["val/macro/d.jpg", "given"] == "macro" and by_path.loc["val/macro/d.jpg", "correction"] == "relabel"
    )
    assert by_path.loc["train/None/b.jpg", "label"] == "None"  # not applied to the bytes that took its path
    assert by_path.loc["renamed/e.jpg", "correction"] == "keep"
    assert applied.dropped["path"].tolist() == ["train/macro/c.jpg"]
    states = dict(zip(applied.outcomes["path"], applied.outcomes["state"]))
    assert states == {"train/None/a.jpg": "applied", "train/macro/c.jpg": "applied", "old/e.jpg": "moved",
                      "train/None/b.jpg": "changed", "gone/x.jpg": "gone"}  # fmt: skip
    assert (
        applied.outcomes.set_index("path").loc["train/None/a.jpg", "applied_to"] == "train/None/a.jpg val/macro/d.jpg"
    )
    assert corrections.counts(applied) == {
        "corrections.rows": 5, "corrections.applied": 2, "corrections.moved": 1, "corrections.changed": 1,
        "corrections.gone": 1, "corrections.unmatched": 2, "corrections.relabelled": 2, "corrections.dropped": 1,
        "corrections.kept": 1,
    }  # fmt: skip


# ---- through the split stage ------------------------------------------------------------------------------------


def write_rows(project: Path, rows: list[str]) -> None:
    (project / "corrections.csv").write_text(HEADER + "".join(f"{row}\n" for row in rows), encoding="utf-8")


def sides(splits_dir: Path) -> dict[str, str]:
    return {path: split for split in ("train", "val", "test") for path in read_split(splits_dir, split)["path"]}


def test_the_split_stage_applies_corrections_and_moves_no_image(project: Path, capsys: pytest.CaptureFixture):
    raw = make_raw_tree(project / "data" / "raw", train_per_class=6, validation_per_class=20, classes=tuple(CLASSES))
    split_stage.main(dvc_args("split"))
    before = sides(project / "data" / "splits")
    test = read_split(project / "data" / "splits", "test")
    moved = test[test["label"] == "None"].iloc[0]  # a test image relabelled: the test score's own labels change
    kept = read_split(project / "data" / "splits", "val").iloc[0]
    dropped = read_split(project / "data" / "splits", "train").iloc[0]["path"]
    write_rows(project, [
        f"{moved['path']},{moved['sha256']},relabel,猫,looks like a cat",
        f"{kept['path']},{kept['sha256']},keep,,",
        f"{dropped},{sha256_file(raw / dropped)},drop,,blurred",
        f"validation/None/none.jpg,{digest(7)},drop,,",
    ])  # fmt: skip
    split_stage.main(dvc_args("split"))
    out = project / "data" / "splits"
    after = sides(out)
    assert {path: side for path, side in before.items() if path != dropped} == after  # no image changed split
    relabelled = read_split(out, "test").set_index("path").loc[moved["path"]]
    assert (relabelled["label"], relabelled["given"], relabelled["correction"]) == ("猫", "None", "relabel")
    assert relabelled["label_index"] == CLASSES.index("猫")
    assert read_split(out, "val").set_index("path").loc[kept["path"], "correction"] == "keep"
    skipped = read_skipped(out).set_index("path")
    assert skipped.loc[dropped, "reason"] == "dropped" and "line 4: blurred" in skipped.loc[dropped, "detail"]
    metrics = json.loads((project / "metrics" / "split.json").read_text())
    assert (metrics["corrections.relabelled"], metrics["corrections.kept"], metrics["corrections.dropped"]) == (1, 1, 1)
    assert metrics["corrections.gone"] == 1 and metrics["skipped.dropped"] == 1
    outcomes = pd.read_csv(out / "corrections.csv", dtype=str, keep_default_na=False)
    assert outcomes["state"].tolist() == ["applied", "applied", "applied", "gone"]
    printed = capsys.readouterr().out
    assert (
        "corrections.csv: 4 rows; images relabelled 1, dropped 1, kept 1; 1 rows not applied (image changed 0, gone 1"
        in printed
    )


def test_a_relabel_settles_a_label_conflict(tmp_path: Path):
    raw = make_raw_tree(tmp_path / "raw", classes=("None", "macro"))
    copy = raw / "validation" / "macro" / "copy.jpg"
    original = sorted((raw / "train" / "None").iterdir())[0]
    copy.write_bytes(original.read_bytes())
    conflicted = make_splits(raw, test_fraction=0.2, holdout_fraction=0.33, seed=1)
    assert (conflicted.skipped["reason"] == "label_conflict").sum() == 2
    row = Correction(original.relative_to(raw).as_posix(), sha256_file(copy), "relabel", "macro", line=2)
    settled = make_splits(raw, test_fraction=0.2, holdout_fraction=0.33, seed=1, corrected=[row])
    assert "label_conflict" not in set(settled.skipped["reason"])
    assert settled.frames["train"].set_index("path").loc[row.path, "label"] == "macro"
    assert settled.duplicates_removed["val"] + settled.duplicates_removed["test"] == 1  # its copy, as any copy


def test_a_bad_row_stops_the_split_stage_and_keeps_its_lists(project: Path):
    make_raw_tree(project / "data" / "raw", classes=tuple(CLASSES))
    split_stage.main(dvc_args("split"))
    lists = {p.name: p.read_bytes() for p in (project / "data" / "splits").iterdir()}
    write_rows(project, [f"train/None/0.jpg,{digest(1)},relabel,chien,"])
    with pytest.raises(CorrectionsError, match="corrections.csv: line 2: relabel to 'chien', which is not a class"):
        split_stage.main(dvc_args("split"))
    assert {p.name: p.read_bytes() for p in (project / "data" / "splits").iterdir()} == lists


def test_relabelling_a_class_s_only_test_image_is_refused_naming_the_row_not_a_lone_image(tmp_path: Path):
    """Found by a new user's pass: the audit's top suspect was the only test image of class None, accepted on the
    review page; split then said None "has one validation image", which it did not. A correction moves no image
    between splits, so the test split is left without the class: the line says so, naming the image."""
    raw = make_raw_tree(tmp_path / "raw", classes=("None", "macro"))
    before = make_splits(raw, test_fraction=0.2, holdout_fraction=0.33, seed=1)
    test = before.frames["test"]
    relabelled = test[test["label"] == "None"]  # every test image of None, as the review page may have had them
    assert (before.frames["val"]["label"] == "None").sum() >= 2  # more than one validation image: not a lone one
    rows = [Correction(r.path, r.sha256, "relabel", "macro", line=2 + i) for i, r in enumerate(relabelled.itertuples())]
    with pytest.raises(SplitError) as refused:
        make_splits(raw, test_fraction=0.2, holdout_fraction=0.33, seed=1, corrected=rows)
    images, those = ("image", "that row") if len(rows) == 1 else ("images", "those rows")
    assert str(refused.value) == (
        f"{raw / 'validation'}: no usable image of class 'None' in the test split: corrections.csv relabels its test "
        f"{images} {', '.join(relabelled['path'])} to 'macro', and a correction moves no image between splits; add "
        f"an image of the class to validation/, or take {those} out of corrections.csv"
    )

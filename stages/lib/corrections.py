"""corrections.csv: a person's decisions about images of the dataset, in one file at the project's root that they
edit and commit; the split stage applies it before splitting (a dependency of split in dvc.yaml).

One row per image, columns COLUMNS:
- `path`: the image's path in the dataset as the split lists name it (relative to data/raw: train/cats/cat.1.jpg);
- `sha256`: the sha256 of its bytes (the split lists' `sha256`): which image the row is about;
- `action`: `relabel` (it shows the class `label`), `drop` (leave it out of every split) or `keep` (reviewed: its
  label is right; the audit does not list it again);
- `label`: the class, for relabel only;
- `note`: why, for the next person (optional).

A row finds its image by content, not by name: a renamed file or a re-packed dataset keeps its rows, and a row is
never applied to other bytes that took its path. Each row's fate (ROW_STATES) is listed in data/splits/corrections.csv
and counted in metrics/split.json, so no row is dropped silently:
- `applied`: its image is at its path;
- `moved`: its image is elsewhere (renamed, re-packed): applied there;
- `changed`: its path holds other bytes now (the file was edited or replaced): not applied;
- `gone`: neither its bytes nor its path are in the dataset: not applied.

A row that cannot be meant (an unknown action or class, a sha256 that is not one, two rows that disagree about one
image) is an error naming its line. Class names are data: a label `None` or `macro` is a class like any other.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from stages.lib.errors import PipelineError

FILE = Path("corrections.csv")  # at the project's root, beside params.yaml
COLUMNS = ["path", "sha256", "action", "label", "note"]
REQUIRED = ("path", "sha256", "action")  # label and note may be left out of a hand-written file
ACTIONS = ("relabel", "drop", "keep")
ROW_STATES = ("applied", "moved", "changed", "gone")
OUTCOMES_FILE = "corrections.csv"  # in data/splits: every row of corrections.csv with its state
OUTCOME_COLUMNS = [*COLUMNS, "state", "applied_to"]
_SHA256 = re.compile(r"[0-9a-f]{64}")


class CorrectionsError(PipelineError):
    pass


@dataclass(frozen=True)
class Correction:
    path: str
    sha256: str
    action: str
    label: str = ""
    note: str = ""
    line: int = 0  # in the file it was read from (the header is line 1); 0 for a row not read from a file

    def decision(self) -> tuple[str, str]:
        return self.action, self.label


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text.strip())


def parse(text: str, source: str | Path, class_names: list[str] | None = None) -> list[Correction]:
    """The rows of a corrections file's `text`, checked; `class_names`: the dataset's, when known. Rows agreeing about
    one image are one row; disagreeing, an error naming both lines."""
    reader = csv.DictReader(io.StringIO(text.removeprefix("\ufeff")))  # Excel writes a byte-order mark
    header = [name.strip() for name in reader.fieldnames or []]
    missing = [name for name in REQUIRED if name not in header]
    if missing:
        raise CorrectionsError(
            f"{source}: line 1 must name the columns {', '.join(COLUMNS)} (label and note may be left out); "
            f"{'found ' + ', '.join(header) if header else 'the file is empty'}"
        )
    unknown = [name for name in header if name not in COLUMNS]
    if unknown:
        raise CorrectionsError(f"{source}: line 1: unknown column {unknown[0]!r}; the columns are {', '.join(COLUMNS)}")
    rows: dict[str, Correction] = {}
    for record in reader:
        line = reader.line_num
        values = {name.strip(): (value or "") for name, value in record.items() if name is not None}
        if None in record:
            raise CorrectionsError(
                f"{source}: line {line} has more fields than the header; quote a value holding a comma"
            )
        if not any(value.strip() for value in values.values()):
            continue  # a blank line
        row = Correction(
            path=_nfc(values.get("path", "")).replace("\\", "/"),
            sha256=values.get("sha256", "").strip().lower(),
            action=values.get("action", "").strip().lower(),
            label=_nfc(values.get("label", "")),
            note=values.get("note", "").strip(),
            line=line,
        )
        check_row(row, source, class_names)
        earlier = rows.get(row.sha256)
        if earlier is not None and earlier.decision() != row.decision():
            raise CorrectionsError(
                f"{source}: lines {earlier.line} and {line} disagree about one image ({row.path}, sha256 "
                f"{row.sha256[:12]}...): {describe(earlier)} and {describe(row)}; keep one of them"
            )
        rows.setdefault(row.sha256, row)
    return list(rows.values())


def check_row(row: Correction, source: str | Path, class_names: list[str] | None) -> None:
    where = f"{source}: line {row.line}" if row.line else str(source)
    if not row.path:
        raise CorrectionsError(f"{where}: no path; name the image as the split lists do (train/cats/cat.1.jpg)")
    if not _SHA256.fullmatch(row.sha256):
        raise CorrectionsError(
            f"{where}: sha256 {row.sha256!r} is not 64 hexadecimal digits; the split lists (data/splits/*.csv) give "
            "each image's, and imagefolder-review writes rows with it"
        )
    if row.action not in ACTIONS:
        raise CorrectionsError(f"{where}: action {row.action!r} is not one of {', '.join(ACTIONS)}")
    if row.action == "relabel" and not row.label:
        raise CorrectionsError(f"{where}: relabel needs a label: the class the image shows")
    if row.action != "relabel" and row.label:
        raise CorrectionsError(f"{where}: a label is for relabel only; {row.action} takes none (found {row.label!r})")
    if row.action == "relabel" and class_names is not None and row.label not in class_names:
        shown = ", ".join(repr(name) for name in class_names[:10]) + (" ..." if len(class_names) > 10 else "")
        raise CorrectionsError(f"{where}: relabel to {row.label!r}, which is not a class of the dataset ({shown})")


def describe(row: Correction) -> str:
    return f"relabel to {row.label!r}" if row.action == "relabel" else row.action


def read(path: Path, class_names: list[str] | None = None) -> list[Correction]:
    """The corrections file at `path`, checked (its rows in file order)."""
    path = Path(path)
    if not path.is_file():
        raise CorrectionsError(
            f"{path}: missing; it holds your decisions about images (an empty one is its header line alone: "
            f"{','.join(COLUMNS)}); restore it with git checkout {path}"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise CorrectionsError(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8 CSV") from None
    return parse(text, path, class_names)


def to_csv(rows: list[Correction]) -> str:
    frame = pd.DataFrame([[getattr(row, name) for name in COLUMNS] for row in rows], columns=COLUMNS)
    return frame.to_csv(index=False, lineterminator="\n")


def merge(existing: list[Correction], new: list[Correction]) -> tuple[list[Correction], int, int]:
    """(rows, added, replaced): `new` rows added to `existing`; a new decision about an image `existing` already has
    replaces it in place (the later decision wins; the same decision again changes nothing). Order: existing rows,
    then new ones, each in its order."""
    by_image = {row.sha256: index for index, row in enumerate(existing)}
    merged, added, replaced = list(existing), 0, 0
    for row in new:
        row = replace(row, line=0)
        if row.sha256 in by_image:
            at = by_image[row.sha256]
            if merged[at].decision() != row.decision():  # the same decision again keeps its first row and note
                merged[at], replaced = row, replaced + 1
        else:
            by_image[row.sha256] = len(merged)
            merged.append(row)
            added += 1
    return merged, added, replaced


@dataclass(frozen=True)
class Applied:
    images: pd.DataFrame  # the rows given, relabelled, without the dropped; `given` and `correction` columns added
    dropped: pd.DataFrame  # the dropped rows as they were
    outcomes: pd.DataFrame  # OUTCOME_COLUMNS: every correction's state and the paths it applied to


def apply(images: pd.DataFrame, rows: list[Correction]) -> Applied:
    """`rows` applied to `images` (columns path, label, sha256, ...): each row to every image with its bytes (a
    file and its exact copies are one image). `given` keeps each image's class folder; `correction` is the action
    applied to it (relabel, keep) or empty."""
    images = images.assign(given=images["label"], correction="")
    by_sha = {row.sha256: row for row in rows}
    matched = images["sha256"].map(lambda digest: by_sha.get(digest))
    for action in ("relabel", "keep"):
        chosen = matched.map(lambda row, action=action: row is not None and row.action == action).astype(bool)
        if action == "relabel":
            images.loc[chosen, "label"] = [row.label for row in matched[chosen]]
        images.loc[chosen, "correction"] = action
    dropping = matched.map(lambda row: row is not None and row.action == "drop").astype(bool)
    present_paths = dict(zip(images["path"], images["sha256"]))
    outcomes = []
    for row in rows:
        at = images.loc[images["sha256"] == row.sha256, "path"].tolist()
        if at:
            state = "applied" if row.path in at else "moved"
        else:
            state = "changed" if row.path in present_paths else "gone"
        outcomes.append([*(getattr(row, name) for name in COLUMNS), state, " ".join(at)])
    return Applied(
        images=images[~dropping].reset_index(drop=True),
        dropped=images[dropping].drop(columns=["given", "correction"]).reset_index(drop=True),
        outcomes=pd.DataFrame(outcomes, columns=OUTCOME_COLUMNS),
    )


def counts(applied: Applied) -> dict[str, int]:
    """metrics/split.json's `corrections.*`: rows by state, and images relabelled, dropped and kept."""
    states = applied.outcomes["state"].value_counts()
    images = applied.images
    return {
        "corrections.rows": len(applied.outcomes),
        **{f"corrections.{state}": int(states.get(state, 0)) for state in ROW_STATES},
        "corrections.unmatched": int(states.get("changed", 0) + states.get("gone", 0)),
        "corrections.relabelled": int(
            ((images["correction"] == "relabel") & (images["label"] != images["given"])).sum()
        ),
        "corrections.dropped": len(applied.dropped),
        "corrections.kept": int((images["correction"] == "keep").sum()),
    }


def summary(metrics: dict, source: Path, outcomes: Path) -> str:
    """The split stage's line about corrections.csv."""
    line = (
        f"split: {source}: {metrics['corrections.rows']} rows; images relabelled {metrics['corrections.relabelled']}, "
        f"dropped {metrics['corrections.dropped']}, kept {metrics['corrections.kept']}"
    )
    if metrics["corrections.moved"]:
        line += f"; {metrics['corrections.moved']} rows found their image at another path"
    if metrics["corrections.unmatched"]:
        line += (
            f"; {metrics['corrections.unmatched']} rows not applied (image changed {metrics['corrections.changed']}, "
            f"gone {metrics['corrections.gone']}: {outcomes})"
        )
    return line

"""download stage: data.source -> data/raw/<folder>/<class>/ + data/raw/manifest.json.

`data.source` is a named dataset (`cats_and_dogs_filtered`, the reference archive; `hotdog`; `mnist`,
`fashion_mnist`, `cifar10`, `cifar100` through keras.datasets), `sample` (generated offline from `seed`), an
http(s) URL, or a local folder or .zip / .tar / .tar.gz. Archives are extracted safely (no absolute paths, `..`, links
or devices; size and member caps), and a folder is copied by the same rules (archive.py); layouts.py says which folder
layouts are accepted and how data/raw holds them.

A local source is a DVC dependency of this stage through the project's folder `archives/` (`--archives`, a dep in
dvc.yaml): DVC hashes what is in it, so a change re-runs this stage and the same content does not. DVC cannot depend
on a path named by a param (docs/datasets.md says why), so a local source elsewhere gets a warning line saying how to
bring it in. The manifest's `sha256` is the content of data/raw (content_sha256), not the archive's bytes: the same
images re-packed give the same data/raw, and nothing after this stage re-runs.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

from stages.lib import files, params, redaction, sources, stage_params
from stages.lib.archive import copy_folder, extract_archive
from stages.lib.cli import run, stage_parser
from stages.lib.errors import PipelineError, warn
from stages.lib.fetch import download
from stages.lib.layouts import IMAGES, TEST, TRAIN, VALIDATION, find_layout
from stages.lib.params import Params, ParamsError
from stages.lib.sample import MAX_CLASSES, write_sample_archive

PARAMS = ("seed", "data")
LOCAL_SOURCES_DOCS = "docs/datasets.md#local-sources-a-folder-or-an-archive"


def cached_download(url: str, downloads: Path, sha256: str | None) -> Path:
    """The archive at `url`, downloaded once into `downloads`: the file name carries a hash of the URL, so another
    URL with the same last path segment is another file, never a wrong reuse."""
    name = Path(unquote(urlparse(url).path)).name
    if name in ("", ".", ".."):
        name = "download"
    archive = downloads / f"{hashlib.sha256(url.encode()).hexdigest()[:12]}-{name}"
    if archive.is_file() and (sha256 is None or files.sha256_file(archive) == sha256):
        print(f"download: reusing {archive} for {redaction.redact(url)} (delete it to download again)")  # atomic
    else:
        download(url, archive, sha256=sha256)
    return archive


def fetch_archive(source: str, downloads: Path, sha256: str | None, seed: int, sample: tuple[int, int, int]) -> Path:
    """Path of the archive for `source`: generated, downloaded (or reused from an earlier download), or local.
    `sample`: train and validation images per class, and classes, of the generated `sample` source."""
    if source == params.SAMPLE_DATASET:
        train, validation, classes = sample
        suffix = "" if classes == 2 else f"-{classes}classes"
        archive = downloads / f"sample-seed{seed}-{train}x{validation}{suffix}.zip"
        write_sample_archive(
            archive, seed=seed, train_per_class=train, validation_per_class=validation, classes=classes
        )
        return archive
    if source in sources.ARCHIVES or params.is_url(source):
        return cached_download(sources.ARCHIVES.get(source, source), downloads, sha256)
    archive = Path(source)
    if not archive.is_file():
        raise PipelineError(
            f"data.source: {archive} is not a file (a local archive path is relative to the project root)"
        )
    return archive


def normalise_layout(extracted: Path, out: Path, source: str, left_out: list[str]) -> int:
    """Move the dataset's folders from `extracted` into `out` as data/raw holds them; return the files left out.
    Errors name `source`, the archive or dataset: `extracted` is a temporary folder gone after the stage.
    `left_out`: the files extraction did not write, which an empty class folder's error names."""
    for folder, found in find_layout(extracted, source, left_out).folders.items():
        shutil.move(found, out / folder)
    left_over = sum(1 for f in extracted.rglob("*") if f.is_file()) if extracted.exists() else 0
    shutil.rmtree(extracted, ignore_errors=True)
    return left_over


def summary(counts: dict[str, int], ignored: dict[str, int]) -> str:
    """`3 classes, 9 files (train 6, validation 3); ignored 1 (hidden 1)`: classes, not class folders of every split.
    `counts`: files per `<folder>/<class>` of data/raw."""
    classes = {key.split("/", 1)[1] for key in counts}
    per_folder: dict[str, int] = {}
    for key, count in counts.items():
        folder = key.split("/", 1)[0]
        per_folder[folder] = per_folder.get(folder, 0) + count
    order = [folder for folder in (TRAIN, VALIDATION, TEST, IMAGES) if folder in per_folder]
    folders = ", ".join(f"{folder} {per_folder[folder]}" for folder in order)
    reasons = ", ".join(f"{reason} {count}" for reason, count in sorted(ignored.items()))
    return f"{len(classes)} classes, {sum(counts.values())} files ({folders}); ignored {sum(ignored.values())}" + (
        f" ({reasons})" if reasons else ""
    )


def is_local_source(source: str) -> bool:
    """A path on this machine (relative to the project root): neither a named dataset nor a URL."""
    return source not in (*sources.NAMES, params.SAMPLE_DATASET) and not params.is_url(source)


def is_folder_source(source: str) -> bool:
    return is_local_source(source) and Path(source).is_dir()


def check_params(source: str, sample_classes: int, params_file: str, sha256: str | None = None) -> None:
    """What the schema (params.py) cannot check without the code of sources.py and sample/, or without looking at the
    disk: that a named source exists or a folder is there, that the sample has data.sample_classes animals to draw,
    and that data.sha256 pins an archive, not a folder."""
    named = (*sources.NAMES, params.SAMPLE_DATASET)
    folder = is_folder_source(source)
    if source not in named and not params.is_url(source) and not params.is_archive_path(source) and not folder:
        raise ParamsError(
            f"{params_file}: data.source: must be a named dataset ({', '.join(sources.NAMES)}), "
            f"{params.SAMPLE_DATASET!r}, an http(s) URL, a local archive path ending in "
            f"{', '.join(params.ARCHIVE_SUFFIXES)} or a local folder (got {source!r}, which is no folder here; a local "
            "path is relative to the project root)"
        )
    if folder and sha256:
        raise ParamsError(
            f"{params_file}: data.sha256: pins an archive's bytes, and data.source {source} is a folder; set it to "
            "null (manifest.json records the folder's content sha256)"
        )
    if sample_classes > MAX_CLASSES:
        raise ParamsError(
            f"{params_file}: data.sample_classes: the sample draws at most {MAX_CLASSES} animals (got {sample_classes})"
        )


def refuse_overlap(folder: Path, out: Path) -> None:
    """A folder source holding the output (`.`, `data`) would copy old outputs in; one inside it would be replaced
    while it is read."""
    folder_at, out_at = Path(os.path.abspath(folder)), Path(os.path.abspath(out))
    if out_at.is_relative_to(folder_at) or folder_at.is_relative_to(out_at):
        how = "holds" if out_at.is_relative_to(folder_at) else "is inside"
        raise PipelineError(
            f"data.source: {folder} {how} {out}, which the download stage writes; name the folder of your images "
            "(under archives/)"
        )


def content_sha256(tree: Path) -> tuple[str, int]:
    """The dataset's identity, whatever packed it, and its bytes: the sha256 of the text `sha256sum` prints for the
    files under `tree` (data/raw being written, before its manifest), one line `<sha256 of the bytes>  <path>` per
    file, sorted by path (relative, `/`-separated, UTF-8: LC_ALL=C sort's order). Re-packed or copied elsewhere, the
    same images give the same value, and data/raw the same DVC hash."""
    found = sorted((path.relative_to(tree).as_posix(), path) for path in tree.rglob("*") if path.is_file())
    listing = "".join(f"{files.sha256_file(path)}  {relative}\n" for relative, path in found)
    return hashlib.sha256(listing.encode()).hexdigest(), sum(path.stat().st_size for _, path in found)


def seen_by_dvc(source: Path, archives: Path) -> bool:
    """Whether DVC sees `source` change through the stage's dependency `archives`: inside it by path, with no linked
    folder on the way (DVC follows a linked file inside a dependency, not a linked folder)."""
    relative = Path(os.path.relpath(os.path.abspath(source), os.path.abspath(archives)))
    if relative.parts[:1] == ("..",) or archives.is_symlink():
        return False
    path = archives
    for part in relative.parts:
        path = path / part
        if path.is_symlink() and path.is_dir():
            return False
    return True


def outside_warning(source: str, archives: Path) -> str:
    """The warning for a local source DVC does not see change, with the two ways out: force the stage, or bring the data
    into archives/ with its hash (dvc import-url copies it; dvc update brings its changes)."""
    where = Path(os.path.abspath(source))
    if where.is_relative_to(Path(os.path.abspath(archives))):  # inside by path: through a linked folder
        why = f"is in {archives}/ through a link to {where.resolve()}, which DVC does not follow"
        # The link itself replaced by the data: data.source stays as it is.
        link = Path(source) if Path(source).is_symlink() else None
        where = where.resolve()
    else:
        why, link = f"is outside {archives}/", None
    target = link or archives / where.name
    bring = f"rm {link} && " if link else ""
    bring += f"dvc import-url {where} {target}" + ("" if link else f", then data.source: {target}")
    return (
        f"data.source {source} {why}, so DVC does not see it change: after changing it run dvc "
        f"repro -f download; better, bring it in: {bring} ({LOCAL_SOURCES_DOCS})"
    )


def main(argv: list[str] | None = None) -> Params:
    parser = stage_parser(__doc__)
    parser.add_output("--out", "the raw class folders to write")
    parser.add_output("--downloads", "where archives are kept (not a DVC output)")
    parser.add_argument("--archives", type=Path, required=True, help="the folder of local sources (a DVC dependency)")
    args = parser.parse_args(argv)
    p = stage_params.for_stage(PARAMS, args.params)
    data, source = p.data, p.data.source
    # Read for every source: a change re-runs this stage whatever the source, as DVC's deps cannot depend on it.
    sample = (data.sample_train_per_class, data.sample_validation_per_class, data.sample_classes)
    seed, max_ratio = p.seed, data.max_compression_ratio
    caps = {"max_members": data.max_archive_members, "max_total_bytes": data.max_archive_bytes}
    check_params(source, data.sample_classes, str(args.params), data.sha256)
    from_folder = is_folder_source(source)
    local = is_local_source(source)  # a folder or a file
    if from_folder:
        refuse_overlap(Path(source), args.out)
    if local and Path(source).exists() and not seen_by_dvc(Path(source), args.archives):
        warn("download", outside_warning(source, args.archives))
    args.downloads.mkdir(parents=True, exist_ok=True)

    with files.replace_dir(args.out) as tmp:
        extracted = tmp / ".extracted"
        if source in sources.KERAS_DATASETS:
            used = sources.fetch_keras_files(source)
            described = {"archive": [path.name for path in used], "sha256": sources.keras_files_sha256(source)}
            sources.write_keras_dataset(source, extracted)
            left_out: dict[str, list[str]] = {}
        elif from_folder:
            described = {"folder": Path(os.path.abspath(source)).name}
            left_out = copy_folder(Path(source), extracted, **caps)
        else:
            archive = fetch_archive(source, args.downloads, data.sha256, seed, sample)
            digest = files.sha256_file(archive)
            if data.sha256 and digest != data.sha256:
                raise PipelineError(
                    f"{archive}: sha256 is {digest}, but data.sha256 pins {data.sha256}; delete the file or fix the pin"
                )
            # A downloaded archive is known by its bytes (what data.sha256 pins); a local one is DVC's to hash, and
            # its bytes here would make the same images re-packed look like other data.
            described = {"archive": archive.name} | ({} if local else {"archive_sha256": digest})
            left_out = extract_archive(archive, extracted, max_compression_ratio=max_ratio, **caps)
        origin = source if source in sources.KERAS_DATASETS or from_folder else str(archive)
        ignored = {reason: len(paths) for reason, paths in left_out.items()}
        left_over = normalise_layout(extracted, tmp, origin, [path for paths in left_out.values() for path in paths])
        if left_over:  # e.g. files beside the class folders
            ignored["outside_layout"] = ignored.get("outside_layout", 0) + left_over
        counts = {
            folder.relative_to(tmp).as_posix(): sum(1 for f in folder.iterdir() if f.is_file())
            for folder in sorted(tmp.glob("*/*"))
            if folder.is_dir()
        }
        if source not in sources.KERAS_DATASETS:
            described["sha256"], described["bytes"] = content_sha256(tmp)
        manifest = {
            "source": redaction.redact(source),
            **described,
            "files": counts,
            "ignored": dict(sorted(ignored.items())),
        }
        files.write_json(tmp / "manifest.json", manifest)
    print(f"download: {redaction.redact(source)} -> {args.out}: {summary(counts, ignored)}")
    return p


if __name__ == "__main__":
    run(main)

"""download stage: data.source -> data/raw/<folder>/<class>/ + data/raw/manifest.json.

`data.source` is a named dataset (`cats_and_dogs_filtered`, the reference archive; `hotdog`; `mnist`,
`fashion_mnist`, `cifar10`, `cifar100` through keras.datasets), `sample` (generated offline from `seed`), an
http(s) URL, or a local .zip / .tar / .tar.gz. Archives are extracted safely (no absolute paths, `..`, links
or devices; size and member caps); layouts.py says which folder layouts are accepted and how data/raw holds them.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

from stages.lib import files, params, redaction, sources, stage_params
from stages.lib.archive import extract_archive
from stages.lib.cli import PipelineError, run, stage_parser
from stages.lib.fetch import download
from stages.lib.layouts import IMAGES, TEST, TRAIN, VALIDATION, find_layout
from stages.lib.params import Params, ParamsError
from stages.lib.sample import MAX_CLASSES, write_sample_archive

PARAMS = ("seed", "data")


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


def check_params(source: str, sample_classes: int, params_file: str) -> None:
    """What the schema (params.py) cannot check without the code of sources.py and sample/: that a named source
    exists, and that the sample has data.sample_classes animals to draw."""
    named = (*sources.NAMES, params.SAMPLE_DATASET)
    if source not in named and not params.is_url(source) and not params.is_archive_path(source):
        raise ParamsError(
            f"{params_file}: data.source: must be a named dataset ({', '.join(sources.NAMES)}), "
            f"{params.SAMPLE_DATASET!r}, an http(s) URL or a local archive path ending in "
            f"{', '.join(params.ARCHIVE_SUFFIXES)} (got {source!r})"
        )
    if sample_classes > MAX_CLASSES:
        raise ParamsError(
            f"{params_file}: data.sample_classes: the sample draws at most {MAX_CLASSES} animals (got {sample_classes})"
        )


def main(argv: list[str] | None = None) -> Params:
    parser = stage_parser(__doc__)
    parser.add_output("--out", "the raw class folders to write")
    parser.add_output("--downloads", "where archives are kept (not a DVC output)")
    args = parser.parse_args(argv)
    p = stage_params.for_stage(PARAMS, args.params)
    data, source = p.data, p.data.source
    # Read for every source: a change re-runs this stage whatever the source, as DVC's deps cannot depend on it.
    sample = (data.sample_train_per_class, data.sample_validation_per_class, data.sample_classes)
    check_params(source, data.sample_classes, str(args.params))
    args.downloads.mkdir(parents=True, exist_ok=True)

    with files.replace_dir(args.out) as tmp:
        extracted = tmp / ".extracted"
        if source in sources.KERAS_DATASETS:
            used = sources.fetch_keras_files(source)
            described = {"archive": [path.name for path in used], "sha256": sources.keras_files_sha256(source)}
            sources.write_keras_dataset(source, extracted)
            left_out: dict[str, list[str]] = {}
        else:
            archive = fetch_archive(source, args.downloads, data.sha256, p.seed, sample)
            digest = files.sha256_file(archive)
            if data.sha256 and digest != data.sha256:
                raise PipelineError(
                    f"{archive}: sha256 is {digest}, but data.sha256 pins {data.sha256}; delete the file or fix the pin"
                )
            described = {"archive": archive.name, "bytes": archive.stat().st_size, "sha256": digest}
            left_out = extract_archive(
                archive,
                extracted,
                max_members=data.max_archive_members,
                max_total_bytes=data.max_archive_bytes,
                max_compression_ratio=data.max_compression_ratio,
            )
        origin = source if source in sources.KERAS_DATASETS else str(archive)
        ignored = {reason: len(paths) for reason, paths in left_out.items()}
        left_over = normalise_layout(extracted, tmp, origin, [path for paths in left_out.values() for path in paths])
        if left_over:  # e.g. files beside the class folders
            ignored["outside_layout"] = ignored.get("outside_layout", 0) + left_over
        counts = {
            folder.relative_to(tmp).as_posix(): sum(1 for f in folder.iterdir() if f.is_file())
            for folder in sorted(tmp.glob("*/*"))
            if folder.is_dir()
        }
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

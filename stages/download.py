"""download stage: data.source -> data/raw/{train,validation}/<class>/ + data/raw/manifest.json.

`data.source` is `cats_and_dogs_filtered` (the reference archive), `sample` (a small dataset generated
offline from `seed`), an http(s) URL, or a local .zip / .tar / .tar.gz. Archives are extracted safely
(no absolute paths, `..`, links or devices; size and member caps) and only the class folders are kept.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import urlparse

from stages.lib import files, params, reference
from stages.lib.archive import extract_archive, find_dataset_root
from stages.lib.cli import PipelineError, run, stage_parser
from stages.lib.fetch import download
from stages.lib.sample_data import write_sample_archive

PARAMS = ("seed", "data")
LAYOUT = ("train", "validation")


def fetch_archive(
    source: str, downloads: Path, *, sha256: str | None, seed: int, sample_sizes: tuple[int, int]
) -> Path:
    """Path of the archive for `source`: generated, downloaded (or reused from an earlier download), or local."""
    if source == params.SAMPLE_DATASET:
        train, validation = sample_sizes
        archive = downloads / f"sample-seed{seed}-{train}x{validation}.zip"
        write_sample_archive(archive, seed=seed, train_per_class=train, validation_per_class=validation)
    elif source == reference.DATASET or source.startswith(("http://", "https://")):
        url = reference.URL if source == reference.DATASET else source
        archive = downloads / (Path(urlparse(url).path).name or "download.zip")
        if archive.exists():  # downloads are atomic, so an existing file is complete
            print(f"download: reusing {archive} (delete it to download again)")
        else:
            download(url, archive, sha256=sha256)
    else:
        archive = Path(source)
        if not archive.is_file():
            raise PipelineError(
                f"data.source: {archive} is not a file (a local archive path is relative to the project root)"
            )
    return archive


def main(argv: list[str] | None = None) -> params.StageParams:
    parser = stage_parser(__doc__)
    parser.add_argument("--out", type=Path, required=True, help="the raw class folders to write")
    parser.add_argument("--downloads", type=Path, required=True, help="where archives are kept (not a DVC output)")
    args = parser.parse_args(argv)
    p = params.for_stage(PARAMS, args.params)
    data = p.data
    source, pin = data.source, data.sha256

    args.downloads.mkdir(parents=True, exist_ok=True)
    archive = fetch_archive(
        source,
        args.downloads,
        sha256=pin,
        seed=p.seed,
        sample_sizes=(data.sample_train_per_class, data.sample_validation_per_class),
    )
    digest = files.sha256_file(archive)
    if pin and digest != pin:
        raise PipelineError(
            f"{archive}: sha256 is {digest}, but data.sha256 pins {pin}; delete the file or fix the pin"
        )

    with files.replace_dir(args.out) as tmp:
        extracted = tmp / ".extracted"
        ignored = extract_archive(
            archive, extracted, max_members=data.max_archive_members, max_total_bytes=data.max_archive_bytes
        )
        root = find_dataset_root(extracted, LAYOUT)
        for folder in LAYOUT:
            shutil.move(root / folder, tmp / folder)
        left_over = sum(1 for f in extracted.rglob("*") if f.is_file())  # e.g. a test/ folder beside train/
        if left_over:
            ignored["outside_layout"] = ignored.get("outside_layout", 0) + left_over
        shutil.rmtree(extracted)
        counts = {
            folder.relative_to(tmp).as_posix(): sum(1 for f in folder.iterdir() if f.is_file())
            for folder in sorted(tmp.glob("*/*"))
            if folder.is_dir()
        }
        manifest = {
            "source": source,
            "archive": archive.name,
            "bytes": archive.stat().st_size,
            "sha256": digest,
            "files": counts,
            "ignored": dict(sorted(ignored.items())),
        }
        files.write_json(tmp / "manifest.json", manifest)
    print(
        f"download: {archive.name} ({manifest['bytes'] / 1e6:.1f} MB) -> {args.out}: "
        + ", ".join(f"{k} {v}" for k, v in counts.items())
        + f"; ignored {sum(ignored.values())}"
    )
    return p


if __name__ == "__main__":
    run(main)

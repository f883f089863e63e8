"""The DVC workflow users run, end to end through real `dvc` and `git`, on tiny sample data.

One module-scoped run of the demo script (every stage, a copy of the project in its own git repo) is committed;
each test then drives `dvc` as a user would and the `project` fixture puts the commit, the workspace and the
DVC outputs back afterwards. Covered: a full `dvc repro` and a no-op one, `dvc exp run -S` re-running only what
depends on the param, `dvc exp show`, `dvc metrics/params/plots diff` across commits, a queued sweep, a local
DVC remote with a fresh clone, and bad input at the workflow level.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import yaml

from tests.conftest import ROOT, jpeg_bytes

pytestmark = pytest.mark.slow

TINY = {
    "data.sample_train_per_class": 12,
    "data.sample_validation_per_class": 10,
    "encode.image_size": 32,
    "baseline.image_size": 32,
    "baseline.epochs": 2,
    "model.image_size": 32,
    "model.calibration_images": 16,
    "transfer.epochs": 2,
    "transfer.batch_size": 8,
    "finetune.epochs": 2,
    "finetune.batch_size": 8,
}
STAGES = set(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"])
QUEUE_TIMEOUT_SECONDS = 600


def venv_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment with the test's venv first on PATH (the stages run `python -m ...`)."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", **(env or {})}


def run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """A command with the test's venv first on PATH, output captured."""
    return subprocess.run(args, cwd=cwd, env=venv_env(env), capture_output=True, text=True, timeout=900)


def sh(*args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    """run() that must succeed; returns stdout + stderr."""
    done = run(*args, cwd=cwd, env=env)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout + done.stderr


def fails(*args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    """run() that must fail; returns stdout + stderr."""
    done = run(*args, cwd=cwd, env=env)
    assert done.returncode != 0, f"{' '.join(args)} should have failed:\n{done.stdout[-3000:]}"
    return done.stdout + done.stderr


def ran(output: str) -> set[str]:
    """The stages dvc ran, from its "Running stage 'x':" lines."""
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")}


def stage_error(output: str) -> str:
    """The one `error: ...` line a failed stage prints (stages/lib/cli.py), with no traceback anywhere."""
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in output, output
    return errors[0]


def experiments(workspace: Path) -> dict[str, dict]:
    """`dvc exp show --json` as experiment name -> its data (params, metrics, ...)."""
    shown = json.loads(sh("dvc", "exp", "show", "--json", cwd=workspace))
    return {rev["name"]: rev["data"] for row in shown for exp in row.get("experiments") or [] for rev in exp["revs"]}


def commit(workspace: Path, message: str) -> None:
    sh("git", "add", "-A", cwd=workspace)
    sh("git", "-c", "user.name=test", "-c", "user.email=test@localhost", "commit", "-q", "-m", message, cwd=workspace)


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def locked_md5(workspace: Path, stage: str, out: str) -> str:
    """The md5 dvc.lock records for one output of a stage."""
    lock = yaml.safe_load((workspace / "dvc.lock").read_text())
    return next(entry["md5"] for entry in lock["stages"][stage]["outs"] if entry["path"] == out)


def temp_files(workspace: Path) -> list[Path]:
    """Leftovers of atomic writes (stages/lib/files.py, fetch.py) outside git's and DVC's own folders."""
    return [
        path
        for pattern in ("**/.*.tmp", "**/*.part")
        for path in workspace.glob(pattern)
        if not {".git", ".dvc"} & set(path.relative_to(workspace).parts)
    ]


DEMO_OUTPUT: dict[str, str] = {}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """scripts/demo.sh (what `make demo` runs) at tiny sizes; it commits its run."""
    workspace = tmp_path_factory.mktemp("workflow") / "demo"
    overrides = [arg for key, value in TINY.items() for arg in ("-S", f"{key}={value}")]
    out = sh("bash", str(ROOT / "scripts" / "demo.sh"), str(workspace), *overrides, cwd=ROOT)
    assert ran(out) == STAGES
    DEMO_OUTPUT["out"] = out
    return workspace


@pytest.fixture
def project(workspace: Path) -> Iterator[Path]:
    """The committed tiny run; afterwards the same commit, workspace files and DVC outputs again."""
    head = sh("git", "rev-parse", "HEAD", cwd=workspace).strip()
    yield workspace
    sh("git", "reset", "-q", "--hard", head, cwd=workspace)
    sh("git", "clean", "-fdq", cwd=workspace)
    sh("dvc", "checkout", "-q", "--force", cwd=workspace)


def test_the_demo_is_quiet_and_leaves_a_two_commit_history(project: Path):
    """No TensorFlow start-up lines, no DVC hash-info warnings; the project, then the demo's run, committed."""
    out = DEMO_OUTPUT["out"]
    noises = ("absl::InitializeLog", "oneDNN custom operations", "cpu_feature_guard", "XNNPACK", "No file hash info")
    for noise in noises:
        assert noise not in out
    assert sh("git", "log", "--format=%s", cwd=project).split("\n")[:2] == ["demo run", "demo workspace"]
    evaluation = read_json(project / "metrics" / "eval.json")  # what it prints: each accuracy with its interval
    low, high = evaluation["finetune.accuracy.low"], evaluation["finetune.accuracy.high"]
    assert f"  finetune  accuracy {evaluation['finetune.accuracy']:.3f} ({low:.3f}-{high:.3f})  macro.f1 " in out
    assert f"under {6 / evaluation['finetune.test_images']:.3f} (6 images) is inside the noise" in out
    assert sh("git", "status", "--porcelain", cwd=project) == ""


def test_the_demo_s_summary_is_the_headline_by_its_names(project: Path):
    """Seen in issue 33: the demo printed an `f1` (class 1's, 0.679) that was not the macro F1 `dvc metrics show`
    gives (0.723)."""
    lines = DEMO_OUTPUT["out"].split("Test split, per model", 1)[1].splitlines()[1:4]
    for line in lines:
        name, *pairs = re.sub(r" \([0-9.]+-[0-9.]+\)", "", line).split()  # without accuracy's interval
        headline = read_json(project / "metrics" / "test" / f"{name}.json")
        printed = dict(zip(pairs[::2], pairs[1::2]))
        assert list(printed) == ["accuracy", "macro.f1", "roc_auc"]
        assert printed == {key: "n/a" if headline[key] is None else f"{headline[key]:.3f}" for key in printed}


def test_comparisons_work_right_after_the_demo(project: Path, tmp_path: Path):
    """The README's commands after `make demo`: an experiment, which re-runs only what depends on its param, then it
    against the demo's committed run."""
    out = sh("dvc", "exp", "run", "-n", "unfreeze-120", "-S", "model.fine_tune_at=120", cwd=project)
    assert ran(out) == {"finetune", "evaluate", "export", "report"}  # and nothing upstream
    finetune = read_json(project / "metrics" / "finetune.json")
    assert finetune["params.trainable"] < 1_862_721  # fewer layers unfrozen than from 100
    steps = (project / "dvclive" / "finetune" / "plots" / "metrics" / "train" / "loss.tsv").read_text().split()[2::2]
    assert steps == ["2", "3"]  # epochs continue after the transfer stage's two
    data = experiments(project)["unfreeze-120"]
    assert data["params"]["params.yaml"]["data"]["model"]["fine_tune_at"] == 120
    assert data["metrics"]["metrics/test/finetune.json"]["data"] == read_json(project / "metrics/test/finetune.json")

    exp_diff = json.loads(sh("dvc", "exp", "diff", "--json", cwd=project))
    assert exp_diff["params"]["params.yaml"]["model.fine_tune_at"] == {"old": 100, "new": 120, "diff": 20}
    assert "metrics/test/finetune.json" in exp_diff["metrics"]
    metrics = json.loads(sh("dvc", "metrics", "diff", "--targets", "metrics/finetune.json", "--json", cwd=project))
    assert (
        metrics["metrics/finetune.json"]["params.trainable"]["new"]
        < metrics["metrics/finetune.json"]["params.trainable"]["old"]
    )
    params = json.loads(sh("dvc", "params", "diff", "--json", cwd=project))
    assert params == {"params.yaml": {"model.fine_tune_at": {"old": 100, "new": 120, "diff": 20}}}
    # Whether the change is noise, image by image: the models the experiment did not retrain did not change at all.
    lines = sh("python", "scripts/compare_runs.py", "HEAD", cwd=project).splitlines()
    assert [line.split(":")[0] for line in lines] == ["baseline", "transfer", "finetune"]
    assert "(+0.0000)" in lines[0] and "right only in workspace: 0, only in HEAD: 0;" in lines[0]
    assert "in HEAD" in lines[2] and "on the same" in lines[2] and lines[2].endswith("the noise")
    sh("dvc", "plots", "diff", "-o", str(tmp_path / "plots"), cwd=project)
    html = (tmp_path / "plots" / "index.html").read_text()
    assert "transfer_finetune_accuracy" in html and "vegaEmbed" in html
    assert "cdn.jsdelivr" not in html and "<script src=" not in html  # offline: the libraries are in the page
    keep = r"Experiment|.*/(val|test)/.*:accuracy$|model\.(base|weights|fine_tune_at)"
    table = sh("dvc", "exp", "show", "--md", "--drop", ".*", "--keep", keep, cwd=project)
    header = table.splitlines()[0]
    for column in ("metrics/val/finetune.json:accuracy", "metrics/test/finetune.json:accuracy", "model.fine_tune_at"):
        assert column in header
    assert header.count("|") <= 12  # the columns people compare, not ~190


def test_demo_sh_keeps_a_workspace_with_your_experiments_unless_told(project: Path):
    sh("dvc", "exp", "run", "-S", "evaluate.threshold=0.4", cwd=project)
    refused = run("bash", str(ROOT / "scripts" / "demo.sh"), str(project), cwd=ROOT)
    assert refused.returncode == 2
    experiments = len(sh("dvc", "exp", "list", "--all-commits", "--name-only", cwd=project).split())
    assert experiments >= 1  # this one, and any an earlier test in this module ran
    assert f"holds your work: {experiments} experiment(s);" in refused.stderr and "--fresh" in refused.stderr
    assert (project / "metrics" / "eval.json").exists()  # nothing was wiped
    sh("dvc", "exp", "run", "--queue", "-S", "evaluate.threshold=0.6", cwd=project)
    refused = run("bash", str(ROOT / "scripts" / "demo.sh"), str(project), cwd=ROOT)
    assert refused.returncode == 2 and f"{experiments} experiment(s); 1 queued experiment(s);" in refused.stderr
    sh("dvc", "queue", "remove", "--all", cwd=project)  # the other tests here share this workspace
    help_text = sh("bash", str(ROOT / "scripts" / "demo.sh"), "--help", cwd=ROOT)
    assert help_text.startswith("usage: scripts/demo.sh [--fresh] DIR")


def test_metrics_show_is_the_headline_in_120_columns(project: Path):
    """Seen on the landed main: the README's first suggestion in demo/ printed 7 lines of 5,326 characters."""
    table = sh("dvc", "metrics", "show", cwd=project)
    assert max(len(line) for line in table.splitlines()) <= 120, table
    rows = {line.split()[0]: line.split()[1:] for line in table.splitlines()[1:]}
    models = ("baseline", "transfer", "finetune")
    assert set(rows) == {
        "metrics/data.json",
        *(f"metrics/{split}/{m}.json" for split in ("val", "test") for m in models),
    }
    assert table.splitlines()[0].split() == [
        "Path", "accuracy", "ci", "log_loss", "macro.f1", "roc_auc", "test.total", "train.total", "val.total"
    ]  # fmt: skip
    # ci: half the width of each accuracy's 95% interval, whose ends are in the detail files
    evaluation = read_json(project / "metrics" / "eval.json")
    test = read_json(project / "metrics" / "test" / "finetune.json")
    assert test["ci"] == round((evaluation["finetune.accuracy.high"] - evaluation["finetune.accuracy.low"]) / 2, 3)
    training = read_json(project / "metrics" / "finetune.json")
    val = read_json(project / "metrics" / "val" / "finetune.json")
    assert val["ci"] == round((training["val.accuracy.high"] - training["val.accuracy.low"]) / 2, 3)
    detail = sh("dvc", "metrics", "show", "metrics/eval.json", cwd=project)  # the detail, by name
    assert "finetune.class.cats.f1" in detail


def test_repro_runs_every_stage_and_writes_what_users_read(project: Path):
    data = read_json(project / "metrics" / "split.json")
    # 12 + 10 usable images per class, minus the test share; the sample's leaked copy is removed.
    assert data["train.total"] == 24 and data["val.total"] + data["test.total"] == 20
    assert data["skipped.total"] == 3 and data["duplicates_removed.val"] + data["duplicates_removed.test"] == 1
    for stage in ("baseline", "transfer", "finetune"):
        assert (project / "models" / f"{stage}.keras").is_file()
        assert read_json(project / "metrics" / f"{stage}.json")["epochs"] == 2
    shown = json.loads(sh("dvc", "metrics", "show", "--json", cwd=project))
    metrics = next(iter(shown.values()))["data"]
    assert metrics["metrics/test/finetune.json"]["data"] == read_json(project / "metrics" / "test" / "finetune.json")
    evaluation = read_json(project / "metrics" / "eval.json")
    assert all(evaluation[f"{m}.test_images"] == data["test.total"] for m in ("baseline", "transfer", "finetune"))
    plots = sh("dvc", "plots", "show", "--json", cwd=project)
    assert all(name in plots for name in ("roc", "baseline_accuracy", "transfer_finetune_loss"))
    report = (project / "reports" / "report.md").read_text()
    export = read_json(project / "metrics" / "export.json")
    assert f"**The model: `{export['model']}`**" in report and "0.9765" not in report  # not the reference's data
    assert (project / "models" / "export" / "model.keras").read_bytes() == (
        project / "models" / f"{export['model']}.keras"
    ).read_bytes()
    audit = read_json(project / "metrics" / "audit.json")
    assert audit["audit.images"] == data["train.total"] + data["val.total"] + data["test.total"]
    assert "## Audit: images to look at" in report
    assert sh("git", "status", "--porcelain", cwd=project) == ""  # every output is either in git or in DVC


def test_second_repro_runs_nothing(project: Path):
    out = sh("dvc", "repro", cwd=project)
    assert "Data and pipelines are up to date." in out and ran(out) == set()
    assert "up to date" in sh("dvc", "status", cwd=project)
    assert sh("git", "status", "--porcelain", cwd=project) == ""


def test_forced_download_rerun_changes_no_hash_downstream(project: Path):
    before = (project / "dvc.lock").read_text()
    assert ran(sh("dvc", "repro", "-f", "download", cwd=project)) == {"download"}
    assert (project / "dvc.lock").read_text() == before  # identical bytes, identical hashes
    assert ran(sh("dvc", "repro", cwd=project)) == set()


def test_targeted_encode_experiment_runs_encode_alone(project: Path):
    out = sh("dvc", "exp", "run", "-S", "encode.examples_per_shard=7", "encode", cwd=project)
    assert ran(out) == {"encode"}
    meta = read_json(project / "data" / "tfrecords" / "meta.json")
    assert len(meta["splits"]["train"]["shards"]) == 4  # 24 images, 7 per shard
    status = sh("dvc", "status", cwd=project)
    assert "baseline:" in status and "transfer:" in status  # their input changed: next repro runs them


def test_metrics_params_and_plots_diff_across_commits(project: Path, tmp_path: Path):
    # A param only evaluate and report read keeps the run short; the test scores move, the models do not.
    models = ("baseline", "transfer", "finetune")
    names = ("eval", *(f"test/{model}" for model in models), *(f"val/{model}" for model in models))
    committed = {name: read_json(project / "metrics" / f"{name}.json") for name in names}
    out = sh("dvc", "exp", "run", "-S", "evaluate.threshold=0.3", cwd=project)
    assert ran(out) == {"evaluate", "report"}  # no model is trained or exported again
    commit(project, "evaluate.threshold 0.3")

    diff = json.loads(sh("dvc", "metrics", "diff", "HEAD~1", "--json", cwd=project))
    assert set(diff) <= {f"metrics/test/{model}.json" for model in models}  # the headline: test scores only
    diff |= json.loads(sh("dvc", "metrics", "diff", "HEAD~1", "--targets", "metrics/eval.json", "--json", cwd=project))
    threshold = diff["metrics/eval.json"]["threshold"]  # the detail, by name
    assert (threshold["old"], threshold["new"]) == (0.5, 0.3)
    for name in names:
        now = read_json(project / "metrics" / f"{name}.json")
        for key, change in diff.get(f"metrics/{name}.json", {}).items():
            assert change["old"] == committed[name][key] and change["new"] == now[key] != change["old"]
    # A threshold moves no ranking: the ROC AUC of every model is the committed one.
    assert not any(key.endswith("roc_auc") for changes in diff.values() for key in changes)

    params = json.loads(sh("dvc", "params", "diff", "HEAD~1", "--json", cwd=project))
    assert list(params) == ["params.yaml"] and list(params["params.yaml"]) == ["evaluate.threshold"]
    assert (params["params.yaml"]["evaluate.threshold"]["old"], params["params.yaml"]["evaluate.threshold"]["new"]) == (
        0.5,
        0.3,
    )

    sh("dvc", "plots", "diff", "HEAD~1", "-o", str(tmp_path / "plots"), cwd=project)
    html = (tmp_path / "plots" / "index.html").read_text()
    assert "ROC on the test split" in html and "baseline_accuracy" in html


def wait_for_queue_workers(start: subprocess.Popen[str], workspace: Path) -> str:
    """Wait until every worker `start` (a running `dvc queue start`, in a session of its own) began has exited;
    returns its output.

    dvc-task forks one process per worker, which keeps the command's stdout until its worker exits: the pipe's
    end is the workers' end. An idle worker shuts itself down (its monitor checks every 10 s), but with two
    workers DVC 3.67 (dvc-task 0.40) can lose worker 2's shutdown: worker 1, started with --clean, cleans the
    broker as it exits and deletes every control message older than 1 s, worker 2's unread shutdown too on a
    busy machine, and worker 2 then idles forever. The README's remedies, in turn: `dvc queue stop`, which
    reaches a worker the queue still lists, then ending the processes (seen here with `0 active, 0 idle` listed:
    the stop reached no one). No assertion here: called from a `finally`, it must not hide the test's own failure.
    """
    deadline, wait = time.monotonic() + 120, 30.0
    while time.monotonic() < deadline:
        try:
            return start.communicate(timeout=wait)[0]
        except subprocess.TimeoutExpired:
            run("dvc", "queue", "stop", cwd=workspace)
            wait = 5.0
    # The workers daemonize into process groups of their own, but stay in the command's session.
    for pid in psutil.pids():
        with contextlib.suppress(OSError):
            if pid != os.getpid() and os.getsid(pid) == start.pid:
                os.kill(pid, signal.SIGTERM)
    return start.communicate(timeout=60)[0] + "\n(a worker outlived the queue and `dvc queue stop`: terminated)"


def test_queued_sweep_runs_every_experiment(project: Path):
    # A sweep over a param that only evaluate and report read keeps each queued run short.
    sweep = {"sweep-30": 0.3, "sweep-70": 0.7}
    for name, threshold in sweep.items():
        sh("dvc", "exp", "run", "--queue", "-n", name, "-S", f"evaluate.threshold={threshold}", cwd=project)
    # Two workers, each in its own temporary copy. Not run(): it would wait for the workers as well.
    start = subprocess.Popen(
        ["dvc", "queue", "start", "-j", "2"],
        cwd=project, env=venv_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,  # its workers with it: see wait_for_queue_workers
    )  # fmt: skip
    try:
        deadline = time.monotonic() + QUEUE_TIMEOUT_SECONDS
        while "Queued" in (status := sh("dvc", "queue", "status", cwd=project)) or "Running" in status:
            assert time.monotonic() < deadline, status
            time.sleep(2)
    finally:
        started = wait_for_queue_workers(start, project)
    assert start.returncode == 0 and "Started '2' new experiments task queue workers." in started, started
    assert status.count("Success") == 2, status + sh("dvc", "queue", "logs", "sweep-30", cwd=project)

    shown = experiments(project)
    committed = read_json(project / "metrics" / "test" / "finetune.json")
    for name, threshold in sweep.items():
        data = shown[name]
        assert data["params"]["params.yaml"]["data"]["evaluate"]["threshold"] == threshold
        evaluation = data["metrics"]["metrics/test/finetune.json"]["data"]
        assert evaluation["roc_auc"] == committed["roc_auc"]  # same models, same ranking
    assert sh("git", "status", "--porcelain", cwd=project) == ""  # queued runs leave the workspace alone


def test_remote_push_then_fresh_clone_pull_is_up_to_date(project: Path, tmp_path: Path):
    sh("dvc", "remote", "add", "-d", "storage", str(tmp_path / "remote"), cwd=project)
    commit(project, "a DVC remote")
    assert "files pushed" in sh("dvc", "push", cwd=project)

    clone = tmp_path / "clone"
    sh("git", "clone", "-q", str(project), str(clone), cwd=tmp_path)
    assert not (clone / "models").exists()
    sh("dvc", "pull", cwd=clone)
    assert "Data and pipelines are up to date." in sh("dvc", "status", cwd=clone)
    for path in ("models/finetune.keras", "data/tfrecords/meta.json", "models/export/model_float32.tflite"):
        assert (clone / path).read_bytes() == (project / path).read_bytes()
    assert ran(sh("dvc", "repro", cwd=clone)) == set()


def test_dvc_artifacts_get_fetches_the_registered_model_from_a_clone(project: Path, tmp_path: Path):
    """dvc.yaml declares models/export as the artifact `image-classifier`; once a version is registered (a GTO git
    tag, what `gto register` and DVC Studio write) and pushed, `dvc artifacts get` fetches it by name, from a clone
    of the repository and the DVC remote, as docs/predict-and-export.md says."""
    name = yaml.safe_load((ROOT / "dvc.yaml").read_text())["artifacts"]
    assert list(name) == ["image-classifier"]
    sh("dvc", "remote", "add", "-d", "storage", str(tmp_path / "remote"), cwd=project)
    commit(project, "a DVC remote")
    sh("dvc", "push", cwd=project)
    who = {f"GIT_{role}_{field}": value for role in ("AUTHOR", "COMMITTER")
           for field, value in (("NAME", "test"), ("EMAIL", "test@localhost"))}  # fmt: skip
    try:
        sh("gto", "register", "image-classifier", "--version", "v1.0.0", cwd=project, env=who)
        clone = tmp_path / "clone"
        sh("git", "clone", "-q", str(project), str(clone), cwd=tmp_path)
        for fetched, extra in ((tmp_path / "latest", []), (tmp_path / "v1", ["--rev", "v1.0.0"])):
            out = sh(
                "dvc", "artifacts", "get", str(clone), "image-classifier", *extra, "-o", str(fetched), cwd=tmp_path
            )
            assert "Downloaded" in out
            exported = project / "models" / "export"
            files = sorted(p.relative_to(exported) for p in exported.rglob("*") if p.is_file())
            assert sorted(p.relative_to(fetched) for p in fetched.rglob("*") if p.is_file()) == files
            assert all((fetched / f).read_bytes() == (exported / f).read_bytes() for f in files)
            assert {"model_int8.tflite", "MODEL_CARD.md", "labels.txt"} <= {f.name for f in files}
        missing = fails("dvc", "artifacts", "get", str(clone), "image-classifier", "--rev", "v9.9.9", cwd=tmp_path)
        assert "image-classifier" in missing
    finally:
        sh("git", "tag", "-d", "image-classifier@v1.0.0", cwd=project)  # the other tests share this repository


def test_the_export_formats_benchmark_reads_a_finished_run(project: Path):
    """benchmarks/export_formats.py (what docs/predict-and-export.md quotes) on the tiny demo run: the export
    record's numbers as they are, and predict run with every exported file on the run's test images."""
    from benchmarks import export_formats

    run = export_formats.measure("tiny", project)
    record = read_json(project / "metrics" / "export.json")
    assert run["classes"] == 2 and run["predict_images"] == run["test_images"] == record["test_images"]
    formats = {row["format"]: row for row in run["formats"]}
    assert list(formats) == ["keras", "saved_model", "tflite_float32", "tflite_dynamic_range", "tflite_int8"]
    for name, row in formats.items():
        path = project / "models" / "export" / row["file"]
        assert row["bytes"] == record[f"{name}.bytes"] and path.exists()
        assert row["test_accuracy"] == record[f"{name}.accuracy"] and row["latency_ms"] == record[f"{name}.latency_ms"]
        assert 0 <= row["predict_agreement"] <= 1
    assert formats["keras"]["predict_agreement"] == formats["tflite_float32"]["predict_agreement"] == 1.0


def test_unknown_param_key_is_refused_by_dvc_naming_the_key(project: Path):
    out = fails("dvc", "exp", "run", "-S", "model.fine_tune_att=5", cwd=project)
    assert "'model.fine_tune_att'" in out.splitlines()[0] and "Traceback" not in out
    assert ran(out) == set() and sh("git", "status", "--porcelain", cwd=project) == ""


def test_added_param_key_is_refused_by_the_first_stage_that_runs(project: Path):
    # `+key=value` makes dvc add the key; only report depends on the whole params.yaml, so it runs, and refuses it.
    out = fails("dvc", "exp", "run", "-S", "+model.fine_tune_att=5", cwd=project)
    assert ran(out) == {"report"}
    assert "model.fine_tune_att" in stage_error(out) and temp_files(project) == []


def test_invalid_value_fails_the_stage_with_one_line_and_no_output(project: Path):
    committed_model = locked_md5(project, "finetune", "models/finetune.keras")
    out = fails("dvc", "exp", "run", "-S", "model.fine_tune_at=-3", cwd=project)
    assert ran(out) == {"finetune"}
    assert "model.fine_tune_at" in stage_error(out) and temp_files(project) == []
    model = project / "models" / "finetune.keras"  # dvc removes a stage's outputs before running it
    assert not model.exists() or hashlib.md5(model.read_bytes()).hexdigest() == committed_model
    assert not (project / "metrics" / "finetune.json").exists()
    assert "finetune:" in sh("dvc", "status", cwd=project)  # not mistaken for a complete run


def test_missing_archive_fails_download_naming_the_path(project: Path):
    out = fails("dvc", "exp", "run", "-S", "data.source=archives/missing.zip", cwd=project)
    assert ran(out) == {"download"}
    assert "archives/missing.zip" in stage_error(out) and temp_files(project) == []
    assert not (project / "data" / "raw").exists()  # dvc removed the old output; nothing new looks valid


def project_copy(copy: Path) -> Path:
    """The project's files, as scripts/demo.sh copies them, in a git repository of its own at `copy`."""
    copy.mkdir()
    files = sh("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=ROOT)
    present = [name for name in files.split("\0") if name and (ROOT / name).exists()]
    sh("cp", "--parents", "-t", str(copy), *present, cwd=ROOT)
    sh("git", "init", "-q", cwd=copy)
    return copy


def test_default_repro_offline_fails_fast_naming_the_offline_options(tmp_path: Path):
    """The committed params.yaml is the real experiment; without a network it must say what to do instead."""
    copy = project_copy(tmp_path / "project")
    # A proxy on a closed port makes every HTTP request fail at once, also on a CI machine that is online.
    closed = "http://127.0.0.1:9"
    proxies = {"HTTP_PROXY": closed, "HTTPS_PROXY": closed, "http_proxy": closed, "https_proxy": closed}
    out = fails("dvc", "repro", cwd=copy, env={**proxies, "NO_PROXY": "", "no_proxy": ""})
    assert ran(out) == {"download"}
    error = stage_error(out)
    assert "make demo" in error and "data.source" in error and "model.weights" in error
    assert not (copy / "data" / "raw").exists() and temp_files(copy) == []


def test_the_readme_s_offline_recipe_for_your_own_data_runs_four_classes_with_the_bundled_base(project: Path):
    """README, Your own dataset: offline, the bundled base (at the size it was trained at) instead of ImageNet's; the
    data a user's own: four classes, the N-class path through real dvc (one param turns the sample into four)."""
    readme = (ROOT / "README.md").read_text()
    (line,) = [line for line in readme.splitlines() if line.endswith("# offline: the bundled base")]
    overrides = [o for o in re.findall(r"-S (\S+)", line) if not o.startswith("data.source=")]  # the sample's data
    assert overrides == ["model.weights=pretrained/mobilenet_v2_animals.weights.h5", "model.image_size=96"]
    # encode.image_size: the tiny workspace stores 32 px; the recipe's 96 px needs stored images at least as large.
    overrides += ["encode.image_size=96", "data.sample_classes=4"]
    out = sh("dvc", "exp", "run", *(a for o in overrides for a in ("-S", o)), cwd=project)
    assert ran(out) == STAGES and "model.weights: none" not in out
    bundled = read_json(ROOT / "pretrained" / "mobilenet_v2_animals.json")["sha256"]
    assert read_json(project / "metrics" / "transfer.json")["weights.sha256"] == bundled
    names = ["bears", "cats", "dogs", "rabbits"]
    assert read_json(project / "data" / "tfrecords" / "meta.json")["class_names"] == names
    evaluation = read_json(project / "metrics" / "eval.json")
    assert all(f"finetune.class.{name}.f1" in evaluation for name in names)
    report = (project / "reports" / "report.md").read_text()
    assert all(f"| `{name}` |" in report for name in names) and "macro F1" in report
    export = read_json(project / "metrics" / "export.json")
    assert export["saved_model.agreement"] == 1.0 and export["saved_model.max_abs_diff"] <= 1e-4
    assert (project / "models" / "export" / "model.keras").read_bytes() == (
        project / "models" / f"{export['model']}.keras"
    ).read_bytes()


def test_back_to_the_demo_run_as_demo_sh_help_says(project: Path):
    """Seen on the landed main: `git checkout -- .` left a stale dvc.lock staged (the demo turns DVC's autostage on),
    and `dvc status` then listed every stage as changed."""
    help_text = sh("bash", str(ROOT / "scripts" / "demo.sh"), "--help", cwd=ROOT)
    assert "  -S model.weights=pretrained/mobilenet_v2_animals.weights.h5\n" in help_text  # the params it sets
    (line,) = [line for line in help_text.splitlines() if line.startswith("Back to the demo run")]
    recipe = line.split(": ", 1)[1]
    sh("dvc", "exp", "run", "-S", "evaluate.threshold=0.3", cwd=project)  # an experiment left in the workspace
    assert sh("git", "status", "--porcelain", cwd=project) != ""
    sh("bash", "-c", recipe, cwd=project)
    assert sh("git", "status", "--porcelain", cwd=project) == ""
    assert "Data and pipelines are up to date." in sh("dvc", "status", cwd=project)
    assert (project / "reports" / "report.md").is_file() and (project / "metrics" / "eval.json").is_file()


# --- local sources under archives/: a real dependency of download ------------------------------------------------


def photos(root: Path) -> Path:
    """training/ + testing/ of two classes, distinct images: enough for split.test_fraction to give test one each."""
    for label, offset in (("a", 0), ("b", 100)):
        for split, count in (("training", 6), ("testing", 5)):
            (root / split / label).mkdir(parents=True, exist_ok=True)
            for i in range(count):
                seed = offset + 50 * (split == "testing") + i
                (root / split / label / f"{i}.jpg").write_bytes(jpeg_bytes(seed, size=(36, 36)))
    return root


def zip_of(tree: Path, archive: Path, compression: int = zipfile.ZIP_DEFLATED, reverse: bool = False) -> Path:
    with zipfile.ZipFile(archive, "w", compression) as zf:
        for path in sorted((p for p in tree.rglob("*") if p.is_file()), reverse=reverse):
            zf.write(path, f"photos/{path.relative_to(tree).as_posix()}")
    return archive


def train_labels(workspace: Path) -> dict[str, str]:
    with (workspace / "data" / "splits" / "train.csv").open() as rows:
        return {row["path"]: row["label"] for row in csv.DictReader(rows)}


@pytest.fixture
def local_project(tmp_path: Path) -> Path:
    """A copy of the project, committed, whose params read a local source under archives/ (set by each test)."""
    copy = project_copy(tmp_path / "project")
    raw = yaml.safe_load((copy / "params.yaml").read_text())
    for key, value in TINY.items():
        section, leaf = key.split(".")
        raw[section][leaf] = value
    (copy / "params.yaml").write_text(yaml.safe_dump(raw))
    return copy


def use_source(workspace: Path, source: str) -> None:
    raw = yaml.safe_load((workspace / "params.yaml").read_text())
    raw["data"]["source"] = source
    (workspace / "params.yaml").write_text(yaml.safe_dump(raw))
    commit(workspace, f"data.source {source}")


def test_editing_a_local_folder_re_runs_download_and_what_follows_and_the_same_content_nothing(local_project: Path):
    """Issue 30: a folder was refused as data.source, and a local source was a param, not a dependency."""
    folder = photos(local_project / "archives" / "photos")
    use_source(local_project, "archives/photos")
    assert ran(sh("dvc", "repro", "encode", cwd=local_project)) == {"download", "split", "encode"}

    for path in folder.rglob("*.jpg"):  # touched, the same bytes: DVC hashes them again and finds them unchanged
        os.utime(path, (time.time() + 60, time.time() + 60))
    assert "Data and pipelines are up to date." in sh("dvc", "status", "--with-deps", "encode", cwd=local_project)
    assert ran(sh("dvc", "repro", "encode", cwd=local_project)) == set()

    (folder / "training" / "a" / "0.jpg").rename(folder / "training" / "b" / "moved.jpg")  # one photo to its class
    status = sh("dvc", "status", "--with-deps", "encode", cwd=local_project)
    assert "download:" in status and "modified:           archives" in status
    assert ran(sh("dvc", "repro", "encode", cwd=local_project)) == {"download", "split", "encode"}
    labels = train_labels(local_project)
    assert labels["train/b/moved.jpg"] == "b" and "train/a/0.jpg" not in labels


def test_re_packing_a_local_archive_re_runs_download_alone_and_a_moved_photo_split_too(local_project: Path):
    """Issue 30: re-zipped under the same name with one photo moved, `dvc status` said up to date. Re-packed with the
    same images (other zip bytes), download re-runs and writes the same data/raw, so split does not."""
    tree = photos(local_project / "tree")
    archive = zip_of(tree, local_project / "archives" / "mine.zip")
    use_source(local_project, "archives/mine.zip")
    assert ran(sh("dvc", "repro", "split", cwd=local_project)) == {"download", "split"}
    raw = locked_md5(local_project, "download", "data/raw")

    packed = archive.read_bytes()
    zip_of(tree, archive, zipfile.ZIP_STORED, reverse=True)
    assert archive.read_bytes() != packed
    assert ran(sh("dvc", "repro", "split", cwd=local_project)) == {"download"}
    assert locked_md5(local_project, "download", "data/raw") == raw

    archive.write_bytes(archive.read_bytes())  # the same bytes written again
    assert "Data and pipelines are up to date." in sh("dvc", "status", "--with-deps", "split", cwd=local_project)

    (tree / "training" / "a" / "0.jpg").rename(tree / "training" / "b" / "moved.jpg")
    zip_of(tree, archive)
    assert ran(sh("dvc", "repro", "split", cwd=local_project)) == {"download", "split"}
    assert train_labels(local_project)["train/b/moved.jpg"] == "b"

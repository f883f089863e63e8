"""train.strategy: the strategies in one process, and two worker processes on 127.0.0.1 under multi_worker (TF_CONFIG
written here, as a cluster manager would), against one process's model."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import tensorflow as tf
import yaml

from stages import baseline
from stages.lib import cluster, distribution, saving
from stages.lib.errors import PipelineError
from tests.conftest import NO_AUGMENTATION, ROOT, build_encoded_project, set_params, stage_args


def start_workers(*commands: list[str]) -> list[subprocess.Popen]:
    """Worker i of a new cluster runs `python <commands[i]>`, with its TF_CONFIG."""
    spec = cluster.local_workers(len(commands))
    return [
        subprocess.Popen(
            [sys.executable, *command],
            cwd=ROOT,
            env={**os.environ, "TF_CONFIG": json.dumps({"cluster": spec, "task": {"type": "worker", "index": i}})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i, command in enumerate(commands)
    ]


def outputs(workers: list[subprocess.Popen], timeout: int = 300) -> list[tuple[int, str]]:
    """(exit code, output) of each worker, once all have ended."""
    texts = [worker.communicate(timeout=timeout)[0] for worker in workers]
    return [(worker.returncode, text) for worker, text in zip(workers, texts)]


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error:")]


def stage_command(root: Path, stage: str, params: Path | None = None) -> list[str]:
    args = stage_args(root, stage)
    if params is not None:
        args[args.index("--params") + 1] = str(params)
    return ["-m", f"stages.{stage}", *args]


def multi_worker_project(root: Path, **overrides: dict) -> Path:
    """A tiny encoded project (16 train and 10 val images, 32 px) training under two workers: each global batch of
    8 is two shares of 4, the val split's last batch of 2 two of 1."""
    build_encoded_project(root, **overrides)
    set_params(root, train={"strategy": "multi_worker"})
    return root


def weights_differences(a: Path, b: Path) -> list[float]:
    first, second = saving.load_model(a), saving.load_model(b)
    return [float(np.max(np.abs(x - y))) for x, y in zip(first.get_weights(), second.get_weights(), strict=True)]


def test_strategy_choices():
    default = tf.distribute.get_strategy()
    assert distribution.make_strategy("none", 600) is default
    assert distribution.make_strategy("auto", 600).num_replicas_in_sync == 1  # no GPUs here


def test_a_malformed_tf_config_is_one_line_before_tensorflow_reads_it(monkeypatch):
    """cluster.py checks it (tests/test_cluster.py has every case): the strategy is not created, nor waited for."""
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(PipelineError, match="^TF_CONFIG: not JSON"):
        distribution.make_strategy("multi_worker", 600)


@pytest.mark.slow  # real worker processes
def test_keras_fit_still_fails_under_two_workers_without_the_fixes():
    # Plain Keras, nothing of this project: when this starts passing, Keras has fixed keras-team/keras#20585 and
    # internals.multi_worker_fixes can go.
    script = textwrap.dedent(
        """
        import keras, numpy as np, tensorflow as tf
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        with strategy.scope():
            model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
            model.compile("sgd", "mse")
        data = tf.data.Dataset.from_tensor_slices((np.ones((16, 4), "float32"), np.ones((16, 1), "float32")))
        model.fit(data.batch(8), epochs=1, verbose=0)
        print("trained")
        """
    )
    ended = outputs(start_workers(["-c", script], ["-c", script]))
    assert [code for code, _ in ended] == [1, 1]
    assert all("PerReplica" in output and "trained" not in output for _, output in ended)


@pytest.mark.slow  # real worker processes
def test_mirrored_strategy_trains_on_two_logical_cpus_and_each_replica_draws_its_own_augmentation(tmp_path: Path):
    # Logical devices must be configured before TensorFlow starts, hence a fresh interpreter.
    script = textwrap.dedent(
        f"""
        import sys; sys.path.insert(0, {str(ROOT)!r}); sys.path.insert(0, {str(ROOT / "tests")!r})
        import keras, tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from stages.lib import distribution, fitting
        from test_fitting import tiny_data, tiny_model
        strategy = distribution.make_strategy("mirrored", 600)
        train, val = tiny_data()
        result = fitting.fit(tiny_model, train, val, epochs=range(2), train_count=32,
            work_dir={str(tmp_path / "c")!r}, live_dir={str(tmp_path / "l")!r}, key="k", strategy=strategy)
        print("replicas", strategy.num_replicas_in_sync, "epochs", result.epochs, "loss", result.final["loss"])
        with strategy.scope():
            dropout = keras.layers.Dropout(0.5, seed=3)
        masks = strategy.run(tf.function(lambda: dropout(tf.ones((4, 16)), training=True)))
        first, second = (m.numpy() > 0 for m in strategy.experimental_local_results(masks))
        print("same masks", bool((first == second).all()))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    words = done.stdout.split()
    assert words[words.index("replicas") + 1] == "2" and words[words.index("epochs") + 1] == "2"
    assert np.isfinite(float(words[words.index("loss") + 1]))
    assert "same masks False" in done.stdout  # Keras alone gives both replicas the same masks


@pytest.mark.slow  # real worker processes
def test_two_workers_train_the_model_one_process_trains(tmp_path: Path):
    one = build_encoded_project(tmp_path / "one")
    baseline.main(stage_args(one, "baseline"))
    two = multi_worker_project(tmp_path / "two")
    chief, worker = outputs(start_workers(stage_command(two, "baseline"), stage_command(two, "baseline")))
    assert chief[0] == 0 and worker[0] == 0, chief[1][-3000:] + worker[1][-3000:]
    assert f"-> {two / 'models' / 'baseline.keras'}" in chief[1]
    assert "(worker 1: the chief writes the outputs)" in worker[1]
    assert max(weights_differences(one / "models" / "baseline.keras", two / "models" / "baseline.keras")) < 1e-5
    one_metrics, two_metrics = (json.loads((root / "metrics" / "baseline.json").read_text()) for root in (one, two))
    for key in ("train.loss", "train.accuracy", "val.loss", "val.accuracy"):
        assert two_metrics[key] == pytest.approx(one_metrics[key], abs=1e-5)
    assert two_metrics["params_read.train.strategy"] == "multi_worker"
    # The chief alone wrote: one model, one log, no checkpoint left behind, nothing else in the project.
    assert sorted(p.name for p in (two / "models").iterdir()) == ["baseline.keras", "checkpoints"]
    assert list((two / "models" / "checkpoints").iterdir()) == []


@pytest.mark.slow  # real worker processes
def test_a_stopped_worker_stops_the_other_with_one_line_and_both_resume_from_the_chiefs_checkpoint(tmp_path: Path):
    root = multi_worker_project(
        tmp_path / "p", model={"dropout": 0.0}, transfer={"epochs": 6, "augment": NO_AUGMENTATION}
    )  # augmentation off: the head trains on features computed once, a fraction of a second per epoch
    state = root / "models" / "checkpoints" / "transfer" / "state.json"
    chief, worker = start_workers(stage_command(root, "transfer"), stage_command(root, "transfer"))
    deadline = time.monotonic() + 240
    while not (state.is_file() and json.loads(state.read_text())["next_epoch"] >= 2):
        assert time.monotonic() < deadline and chief.poll() is None, "no checkpoint of epoch 2 came"
        time.sleep(0.05)
    worker.send_signal(signal.SIGTERM)  # which TensorFlow's coordination service takes for itself, unless told not to
    (code, output), (worker_code, worker_output) = outputs([chief, worker])
    assert worker_code == 143 and re.fullmatch(
        r"error: interrupted \(SIGTERM\) (in|after) epoch \d of 6; start every worker again: they resume from the "
        r"chief's checkpoint of epoch \d",
        "\n".join(error_lines(worker_output)),
    ), worker_output[-3000:]
    assert code == 1 and error_lines(output) == [error_lines(output)[-1]]  # one line
    assert error_lines(output)[0].startswith("error: another worker stopped (")
    assert error_lines(output)[0].endswith(
        "see its own output for why, then start every worker again: they resume from the chief's last checkpoint"
    )
    assert "Traceback" not in output
    stopped_at = json.loads(state.read_text())["next_epoch"]

    resumed = outputs(start_workers(stage_command(root, "transfer"), stage_command(root, "transfer")))
    assert [code for code, _ in resumed] == [0, 0], resumed[0][1][-3000:] + resumed[1][1][-3000:]
    assert f"resuming from the checkpoint of epoch {stopped_at} in {state.parent}" in resumed[0][1]
    assert f"resuming from the checkpoint of epoch {stopped_at} in the chief's checkpoint folder" in resumed[1][1]
    lines = (root / "dvclive" / "transfer" / "plots" / "metrics" / "train" / "loss.tsv").read_text().splitlines()
    assert [int(line.split("\t")[0]) for line in lines[1:]] == list(range(6))  # every epoch logged once
    assert json.loads((root / "metrics" / "transfer.json").read_text())["epochs"] == 6
    assert not state.parent.exists()


@pytest.mark.slow  # real worker processes
def test_workers_given_other_params_are_refused_with_one_line_each(tmp_path: Path):
    root = multi_worker_project(tmp_path / "p")
    other = yaml.safe_load((root / "params.yaml").read_text())
    other["baseline"]["epochs"] += 1
    (tmp_path / "other.yaml").write_text(yaml.safe_dump(other))
    commands = stage_command(root, "baseline"), stage_command(root, "baseline", tmp_path / "other.yaml")
    ended = outputs(start_workers(*commands))
    assert [code for code, _ in ended] == [1, 1]
    chief_line, worker_line = (error_lines(output) for _, output in ended)
    assert chief_line == [
        "error: 1 worker(s) were given other params or inputs (params.yaml, data/, models/) than the chief "
        "(worker 0): give every worker the same, then start all of them again"
    ]
    assert worker_line == [chief_line[0].replace("(worker 0):", "(worker 0), this one among them:")]
    assert not (root / "models" / "baseline.keras").exists()


def two_workers(monkeypatch) -> SimpleNamespace:
    """A stand-in for a MultiWorkerMirroredStrategy of two workers, for the checks that read only its size."""
    monkeypatch.setattr(distribution, "is_multi_worker", lambda strategy: True)
    return SimpleNamespace(num_replicas_in_sync=2, extended=SimpleNamespace(worker_devices=("/job:worker/cpu:0",)))


def test_even_shares_refuses_a_batch_size_that_is_no_multiple_of_the_workers(monkeypatch):
    with pytest.raises(PipelineError) as raised:
        distribution.even_shares(two_workers(monkeypatch), "baseline.batch_size", 7, {"train": 16, "val": 10})
    assert str(raised.value) == (
        "baseline.batch_size=7 does not split evenly over the 2 workers, so they would not train the model one "
        "process trains; set baseline.batch_size to 8"
    )


def test_even_shares_refuses_a_last_batch_with_fewer_images_than_workers(monkeypatch):
    with pytest.raises(PipelineError) as raised:
        distribution.even_shares(two_workers(monkeypatch), "transfer.batch_size", 6, {"train": 13, "val": 12})
    assert str(raised.value) == (
        "transfer.batch_size=6: the last train batch holds 1 image(s), fewer than the 2 workers, one of which would "
        "get none and fail; set transfer.batch_size to 8"  # 13 = 8 + 5 (3 + 2), 12 = 8 + 4
    )


def test_even_shares_warns_of_a_last_batch_that_splits_unevenly(monkeypatch):
    uneven = distribution.even_shares(two_workers(monkeypatch), "finetune.batch_size", 8, {"train": 19, "val": 10})
    assert uneven == (
        "finetune.batch_size=8: the last train batch holds 3 images, which do not split evenly over the 2 "
        "workers (under no batch size: 19 images are no multiple of 2), so that step of every epoch weighs images "
        "a little unlike one process"
    )


def test_even_shares_passes_even_batches_and_one_process(monkeypatch):
    assert (
        distribution.even_shares(tf.distribute.get_strategy(), "baseline.batch_size", 7, {"train": 15, "val": 9})
        is None
    )
    assert (
        distribution.even_shares(two_workers(monkeypatch), "baseline.batch_size", 8, {"train": 16, "val": 10}) is None
    )


def test_worker_failures_are_one_line_under_several_workers_only(monkeypatch):
    lost = tf.errors.UnavailableError(None, None, "Collective ops is aborted by: peer down {{node Bcast}}\nmore")
    with pytest.raises(tf.errors.UnavailableError), distribution.worker_failures(tf.distribute.get_strategy()):
        raise lost  # one process: TensorFlow's own error, untouched
    with pytest.raises(PipelineError) as raised, distribution.worker_failures(two_workers(monkeypatch)):
        raise lost
    assert str(raised.value) == (
        "another worker stopped (Collective ops is aborted by: peer down); see its own output for why, then start "
        "every worker again: they resume from the chief's last checkpoint"
    )


@pytest.mark.slow  # real worker processes
def test_an_uneven_batch_is_refused_on_every_worker_before_training(tmp_path: Path):
    root = multi_worker_project(tmp_path / "p", baseline={"batch_size": 5})  # 16 train images: a last batch of 1
    ended = outputs(start_workers(stage_command(root, "baseline"), stage_command(root, "baseline")))
    assert [code for code, _ in ended] == [1, 1]
    for _, output in ended:
        assert error_lines(output) == [
            "error: baseline.batch_size=5 does not split evenly over the 2 workers, so they would not train the "
            "model one process trains; set baseline.batch_size to 6"
        ]
        assert "Traceback" not in output
    assert not (root / "models" / "baseline.keras").exists()


@pytest.mark.slow  # real worker processes
def test_a_worker_that_fails_before_training_stops_the_chief_with_one_line(tmp_path: Path):
    root = multi_worker_project(tmp_path / "p")
    broken = stage_command(root, "baseline")
    broken[broken.index("--records") + 1] = str(tmp_path / "not-pulled")  # as on a host that forgot `dvc pull`
    (chief_code, chief), (worker_code, worker) = outputs(start_workers(stage_command(root, "baseline"), broken))
    assert worker_code == 1 and error_lines(worker)[0].startswith(f"error: {tmp_path / 'not-pulled'}")
    assert chief_code == 1 and "Traceback" not in chief
    assert len(error_lines(chief)) == 1 and error_lines(chief)[0].startswith("error: another worker stopped (")
    assert not (root / "models" / "baseline.keras").exists()


def start_alone(command: list[str], spec: dict, index: int) -> subprocess.Popen:
    """Worker `index` of the cluster `spec`, started without the others."""
    task = {"cluster": spec, "task": {"type": "worker", "index": index}}
    return subprocess.Popen(
        [sys.executable, *command],
        cwd=ROOT,
        env={**os.environ, "TF_CONFIG": json.dumps(task)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@contextlib.contextmanager
def killed_when_done(workers: list[subprocess.Popen]):
    """The workers, each killed at the end if it still runs (a test that failed: waiting workers hang)."""
    try:
        yield workers
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()


@pytest.mark.slow
def test_a_worker_that_never_comes_ends_the_others_after_the_join_timeout_with_one_line(tmp_path: Path):
    root = multi_worker_project(tmp_path / "p", train={"join_timeout": 3})
    chief_spec, worker_spec = cluster.local_workers(2), cluster.local_workers(2)
    missing = [chief_spec["worker"][1], worker_spec["worker"][0]]
    started = time.monotonic()
    alone = [  # the chief without worker 1, and worker 1 without the chief
        start_alone(stage_command(root, "baseline"), chief_spec, 0),
        start_alone(stage_command(root, "baseline"), worker_spec, 1),
    ]
    with killed_when_done(alone):
        ended = outputs(alone, timeout=120)
    took = time.monotonic() - started
    for index, address, (code, output) in zip((1, 0), missing, ended, strict=True):
        assert code == 1 and "Traceback" not in output, output[-3000:]
        assert error_lines(output) == [
            f"error: worker {index} ({address}) of TF_CONFIG did not start within train.join_timeout (3 s); start it "
            "with the same stage command and its own TF_CONFIG, then this one again"
        ]
    assert 3 < took < 60, took  # the join timeout, after TensorFlow's import
    assert not (root / "models" / "baseline.keras").exists()


@pytest.mark.slow
def test_ctrl_c_and_sigterm_end_a_worker_waiting_for_the_others_at_once_with_one_line(tmp_path: Path):
    root = multi_worker_project(tmp_path / "p")  # params.yaml's join timeout: 10 minutes
    specs = {signal.SIGINT: cluster.local_workers(2), signal.SIGTERM: cluster.local_workers(2)}
    waiting = {signum: start_alone(stage_command(root, "baseline"), spec, 0) for signum, spec in specs.items()}
    with killed_when_done(list(waiting.values())):
        for signum, spec in specs.items():  # it waits once it holds its own port
            deadline = time.monotonic() + 120
            while not cluster.listening(spec["worker"][0]):
                assert time.monotonic() < deadline and waiting[signum].poll() is None, waiting[signum].stdout.read()
                time.sleep(0.1)
        sent = time.monotonic()
        for signum, worker in waiting.items():
            worker.send_signal(signum)
        ended = outputs(list(waiting.values()), timeout=60)
        took = time.monotonic() - sent
    for signum, (code, output) in zip(waiting, ended, strict=True):
        assert code == 128 + signum and "Traceback" not in output, output[-3000:]
        assert error_lines(output) == [
            f"error: interrupted ({signal.Signals(signum).name}) while waiting for the other workers to start; "
            "nothing was written"
        ]
    assert took < 5, took

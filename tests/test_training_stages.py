"""The baseline, transfer and finetune stages on a tiny encoded project (32 px, random weights)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import keras
import numpy as np
import pytest
import yaml

from stages import baseline, finetune, transfer
from stages.lib import checkpoints, intervals, models, params, records, saving, stage_params, training
from tests.conftest import NO_AUGMENTATION, ROOT, THREE_CLASSES, build_encoded_project, dvc_args, set_params, stage_args

pytestmark = pytest.mark.slow  # every test here trains with the real stages


def declared_leaves(stage_params: tuple[str, ...], path: Path) -> set[str]:
    keys = params.all_keys(params.load(path))
    return {k for k in keys if any(k == d or k.startswith(d + ".") for d in stage_params)}


def steps(root: Path, stage: str) -> list[int]:
    lines = (root / "dvclive" / stage / "plots" / "metrics" / "eval" / "accuracy.tsv").read_text().splitlines()[1:]
    return [int(line.split("\t")[0]) for line in lines]


def run_cli(module, argv: list[str]) -> str:
    """Run a stage as its __main__ does; return the one-line error, or '' on success."""
    try:
        module.run(lambda: module.main(argv))
    except SystemExit as exc:
        return str(exc.code)
    return ""


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = build_encoded_project(tmp_path_factory.mktemp("stages"))
    for module, name in ((transfer, "transfer"), (finetune, "finetune")):
        argv = stage_args(root, name)
        if name == "finetune":
            argv += ["--transfer-model", str(root / "models" / "transfer.keras")]
        view = module.main(argv)
        assert view.read == declared_leaves(module.PARAMS, root / "params.yaml")
    return root


def test_transfer_writes_model_logs_and_flat_metrics(trained: Path):
    metrics = json.loads((trained / "metrics" / "transfer.json").read_text())
    assert list(metrics) == sorted(metrics)
    assert metrics["epochs"] == 2 and metrics["cached_features"] == 0  # the default augmentation is on
    assert {"train.loss", "train.accuracy", "val.loss", "val.accuracy", "seconds", "images_per_second"} <= set(metrics)
    assert metrics["params.trainable"] == 1_281
    # The headline row: val accuracy and half its 95% interval, whose ends are in the training record.
    val_images = records.read_meta(trained / "data" / "tfrecords")["splits"]["val"]["count"]
    low, high = intervals.wilson(round(metrics["val.accuracy"] * val_images), val_images)
    assert (metrics["val.accuracy.low"], metrics["val.accuracy.high"]) == pytest.approx((low, high), abs=1e-6)
    headline = json.loads((trained / "metrics" / "val" / "transfer.json").read_text())
    assert headline == {"accuracy": metrics["val.accuracy"], "ci": round((high - low) / 2, 3)}
    assert metrics["calibration_images"] == 16  # weights: none: all 16 train images (fewer than asked for)
    # What the stage read, as it read it: a params.yaml changed under a running stage shows here.
    params_yaml = yaml.safe_load((trained / "params.yaml").read_text())
    read = {k.removeprefix("params_read."): v for k, v in metrics.items() if k.startswith("params_read.")}
    assert read["transfer.epochs"] == params_yaml["transfer"]["epochs"] == 2 and read["seed"] == params_yaml["seed"]
    assert {key.split(".")[0] for key in read} <= {"seed", "model", "train", "transfer"}  # its dvc.yaml params
    assert steps(trained, "transfer") == [0, 1]
    model = keras.models.load_model(trained / "models" / "transfer.keras", safe_mode=True)
    assert [layer.name for layer in model.layers][1] == "augmentation"
    assert not (trained / "models" / "checkpoints" / "transfer").exists()


def test_finetune_continues_the_epoch_count(trained: Path):
    metrics = json.loads((trained / "metrics" / "finetune.json").read_text())
    assert steps(trained, "finetune") == [2, 3]
    assert metrics["epochs"] == 2
    # MobileNetV2 from layer 100 at 32 px: the same layers as at 160 px, so the same trainable counts.
    assert metrics["params.trainable"] == 1_862_721 and metrics["trainable_variables"] == 56
    model = keras.models.load_model(trained / "models" / "finetune.keras", safe_mode=True)
    assert float(model.optimizer.learning_rate) == pytest.approx(3e-4 * 0.1)  # transfer's rate x lr_factor


PLAIN_KERAS = """
import sys, numpy as np, keras
images = np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 3)).astype("float32")
for path in sys.argv[1:]:
    model = keras.saving.load_model(path)  # Keras' defaults: safe_mode and compile
    np.save(path + ".npy", np.asarray(model(images, training=False)))
assert not [name for name in sys.modules if name == "stages" or name.startswith("stages.")]
"""


def test_the_models_users_take_away_load_in_plain_keras(trained: Path, tmp_path: Path):
    """Seen on the landed main: keras.saving.load_model("models/finetune.keras") in a Python without this project
    failed with a 157,819-character error (`Could not locate class 'InferenceMode'`)."""
    paths = [str(trained / "models" / f"{stage}.keras") for stage in ("transfer", "finetune")]
    done = subprocess.run([sys.executable, "-c", PLAIN_KERAS, *paths], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    images = np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 3)).astype("float32")
    for path in paths:  # the same outputs as the model this project loads
        ours = np.asarray(saving.load_model(Path(path))(images, training=False))
        assert np.abs(np.load(path + ".npy") - ours).max() <= 1e-6


def test_finetune_rejects_a_layer_past_the_base(trained: Path, tmp_path: Path):
    params_file = tmp_path / "params.yaml"
    params_file.write_text((trained / "params.yaml").read_text())
    set_params(tmp_path, model={"fine_tune_at": 500})
    argv = stage_args(trained, "finetune") + ["--params", str(params_file), "--model", str(tmp_path / "f.keras")]
    argv += ["--transfer-model", str(trained / "models" / "transfer.keras")]
    error = run_cli(finetune, argv)
    assert error == (  # checked against the base itself, once the transfer model is loaded
        "error: model.fine_tune_at: 500 is past the base's layers; mobilenet_v2 has 154, "
        "so allowed values are 0 to 153 (its own choice: 100, or null for that)"
    )
    assert not (tmp_path / "f.keras").exists()


def test_finetune_from_layer_0_trains_the_whole_base_without_a_feature_cache(trained: Path, tmp_path: Path, capsys):
    """Seen in issue 33: `-S model.fine_tune_at=0` ended in Keras' `ValueError: outputs argument cannot be empty`
    with the default finetune.cache_features: nothing is below the cut, so there is nothing to cache."""
    (tmp_path / "params.yaml").write_text((trained / "params.yaml").read_text())
    set_params(tmp_path, model={"fine_tune_at": 0}, finetune={"cache_features": True, "epochs": 1})
    argv = stage_args(trained, "finetune") + ["--params", str(tmp_path / "params.yaml")]
    argv += [
        "--model",
        str(tmp_path / "f.keras"),
        "--metrics",
        str(tmp_path / "f.json"),
        "--logs",
        str(tmp_path / "logs"),
    ]
    argv += [
        "--val-metrics",
        str(tmp_path / "val.json"),
        "--transfer-model",
        str(trained / "models" / "transfer.keras"),
    ]
    assert run_cli(finetune, argv) == ""
    assert (
        "finetune: model.fine_tune_at 0 trains every layer of the base: nothing below it to compute once, so "
        "finetune.cache_features is not used" in capsys.readouterr().out.splitlines()
    )
    metrics = json.loads((tmp_path / "f.json").read_text())
    assert metrics["cached_features"] == 0 and "features_seconds" not in metrics
    assert metrics["fine_tune_at"] == 0 and metrics["params.trainable"] > 2_200_000  # all of MobileNetV2 but BatchNorm


def test_transfer_with_a_missing_weights_file_is_one_line(trained: Path, tmp_path: Path):
    (tmp_path / "params.yaml").write_text((trained / "params.yaml").read_text())
    set_params(tmp_path, model={"weights": "weights/missing.h5"})
    argv = stage_args(trained, "transfer") + ["--params", str(tmp_path / "params.yaml")]
    argv += ["--model", str(tmp_path / "t.keras")]
    assert run_cli(transfer, argv).startswith("error: model.weights: weights/missing.h5 is not a file")
    assert not (tmp_path / "t.keras").exists()


def test_transfer_trains_on_cached_features_when_augmentation_is_off(tmp_path: Path):
    root = build_encoded_project(
        tmp_path, model={"calibration_images": 0}, transfer={"epochs": 2, "batch_size": 8, "augment": NO_AUGMENTATION}
    )
    transfer.main(stage_args(root, "transfer"))
    metrics = json.loads((root / "metrics" / "transfer.json").read_text())
    assert metrics["cached_features"] == 1 and metrics["features_seconds"] >= 0
    assert metrics["params.trainable"] == 1_281 and steps(root, "transfer") == [0, 1]
    model = keras.models.load_model(root / "models" / "transfer.keras", safe_mode=True)
    assert "augmentation" not in [layer.name for layer in model.layers]
    # calibration_images: 0 keeps Keras' initial BatchNorm statistics
    assert metrics["calibration_images"] == 0
    assert all(not w.numpy().any() for w in models.base_of(model).weights if "moving_mean" in w.path)


def test_transfer_with_augmented_views_trains_the_head_on_features_of_k_views_computed_once(tmp_path, monkeypatch):
    root = build_encoded_project(tmp_path, transfer={"epochs": 3, "batch_size": 8, "augmented_views": 2})
    passes = []
    real_features = models.features

    def counted(feature_model, dataset, augmented=False):
        passes.append(augmented)
        return real_features(feature_model, dataset, augmented)

    monkeypatch.setattr(models, "features", counted)
    transfer.main(stage_args(root, "transfer"))
    assert passes == [True, True, False]  # two augmented views of train, val as it is; none per epoch
    metrics = json.loads((root / "metrics" / "transfer.json").read_text())
    assert metrics["cached_features"] == 1 and metrics["augmented_views"] == 2 and steps(root, "transfer") == [0, 1, 2]
    model = keras.models.load_model(root / "models" / "transfer.keras", safe_mode=True)
    assert [layer.name for layer in model.layers][1] == "augmentation"  # kept for fine-tuning


@pytest.mark.parametrize("arch", ["simple_cnn", "googlenet"])
def test_baseline_trains_and_saves_the_main_output(arch: str, tmp_path: Path):
    size = 32 if arch == "simple_cnn" else 65  # GoogLeNet's smallest input
    root = build_encoded_project(
        tmp_path, encode={"image_size": size}, baseline={"arch": arch, "image_size": size, "epochs": 1}
    )
    view = baseline.main(stage_args(root, "baseline"))
    assert view.read == declared_leaves(baseline.PARAMS, root / "params.yaml")
    metrics = json.loads((root / "metrics" / "baseline.json").read_text())
    assert metrics["epochs"] == 1 and 0 <= metrics["val.accuracy"] <= 1 and metrics["val.loss"] > 0
    model = keras.models.load_model(root / "models" / "baseline.keras", safe_mode=True)
    assert len(model.outputs) == 1 and model.output_shape == (None, 1)
    assert steps(root, "baseline") == [0]


def test_a_stage_killed_before_its_model_is_saved_trains_nothing_again(tmp_path: Path, monkeypatch, capsys):
    root = build_encoded_project(tmp_path, baseline={"epochs": 2})
    real_save = training.save_model

    def killed(*args, **kwargs):
        raise SystemExit(-9)  # as a kill -9 after the last epoch's checkpoint, before the stage's model is written

    monkeypatch.setattr(training, "save_model", killed)
    with pytest.raises(SystemExit):
        baseline.main(stage_args(root, "baseline"))
    monkeypatch.setattr(training, "save_model", real_save)
    capsys.readouterr()
    baseline.main(stage_args(root, "baseline"))
    out = capsys.readouterr().out
    assert "resuming from the checkpoint of epoch 2" in out and "Epoch 1/2" not in out and "Epoch 2/2" not in out
    assert json.loads((root / "metrics" / "baseline.json").read_text())["epochs"] == 2
    assert (root / "models" / "baseline.keras").is_file()
    assert not (root / "models" / "checkpoints" / "baseline").exists()  # gone once the model is saved


def transfer_after_two_epochs(tmp_path: Path, **streams) -> tuple[Path, list[str], Path, subprocess.Popen]:
    """A 6-epoch transfer stage started as its own process, once its checkpoint holds 2 epochs: the project, the
    command, the checkpoint's state file and the process (still running)."""
    root = build_encoded_project(tmp_path, transfer={"epochs": 6, "batch_size": 4})
    argv = [sys.executable, "-m", "stages.transfer", *stage_args(root, "transfer")]
    state = root / "models" / "checkpoints" / "transfer" / checkpoints.STATE
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, text=True, **streams)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if state.exists() and json.loads(state.read_text())["next_epoch"] >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "training finished before it could be stopped:\n" + proc.stdout.read()
    return root, argv, state, proc


def test_killed_stage_resumes_from_its_last_epoch(tmp_path: Path):
    root, argv, state, proc = transfer_after_two_epochs(tmp_path, stderr=subprocess.STDOUT)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = json.loads(state.read_text())["next_epoch"]
    assert 2 <= done_before < 6
    assert not (root / "models" / "transfer.keras").exists()

    rerun = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"resuming from the checkpoint of epoch {done_before}" in rerun.stdout
    assert f"Epoch {done_before + 1}/6" in rerun.stdout and "Epoch 1/6" not in rerun.stdout
    assert steps(root, "transfer") == [0, 1, 2, 3, 4, 5]
    assert json.loads((root / "metrics" / "transfer.json").read_text())["epochs"] == 6
    assert (root / "models" / "transfer.keras").exists() and not state.exists()


def test_ctrl_c_ends_training_with_one_line_naming_the_epoch_and_a_rerun_resumes(tmp_path: Path):
    root, argv, state, proc = transfer_after_two_epochs(tmp_path, stderr=subprocess.PIPE)
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)  # what Ctrl-C sends, to dvc repro and the stage alike
    try:
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()  # if it is still running: the test failed
    assert time.monotonic() - sent < 5 and proc.returncode == 130
    done = json.loads(state.read_text())["next_epoch"]
    assert 2 <= done < 6 and not (root / "models" / "transfer.keras").exists()
    # Warnings the stage gave before (stderr is their channel too: model.weights none here), then one error line.
    *warnings, last = stderr.rstrip("\n").split("\n")
    assert "Traceback" not in stderr and stderr.endswith("\n"), stderr
    assert all(line.startswith("transfer: warning: ") for line in warnings), stderr
    assert last in (
        f"error: interrupted (SIGINT) in epoch {done + 1} of 6; run the stage again to resume from its checkpoint of "
        f"epoch {done}",
        f"error: interrupted (SIGINT) after epoch {done} of 6; run the stage again to resume from its checkpoint of "
        f"epoch {done}",
    )

    rerun = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"resuming from the checkpoint of epoch {done}" in rerun.stdout
    assert steps(root, "transfer") == [0, 1, 2, 3, 4, 5]
    assert json.loads((root / "metrics" / "transfer.json").read_text())["epochs"] == 6


def test_same_inputs_give_bit_identical_training(tmp_path: Path):
    root = build_encoded_project(tmp_path, baseline={"epochs": 2})
    weights = []
    for run in ("first", "second"):
        args = stage_args(root, "baseline") + ["--model", str(root / f"{run}.keras"), "--logs", str(root / run)]
        baseline.main(args)
        weights.append(keras.models.load_model(root / f"{run}.keras", safe_mode=True).get_weights())
    assert all((a == b).all() for a, b in zip(*weights))
    first, second = (
        (root / run / "plots" / "metrics" / "train" / "loss.tsv").read_text() for run in ("first", "second")
    )
    assert first == second


def test_ten_classes_never_train_a_single_logit_model(tmp_path: Path):
    names = tuple(f"class {i}" for i in range(10))
    root = build_encoded_project(tmp_path, names, baseline={"epochs": 1})
    baseline.main(stage_args(root, "baseline"))
    model = keras.models.load_model(root / "models" / "baseline.keras", safe_mode=True)
    assert model.output_shape == (None, 10)
    assert isinstance(model.loss, keras.losses.SparseCategoricalCrossentropy)
    assert json.loads((root / "metrics" / "baseline.json").read_text())["val.accuracy"] <= 1


def test_class_weight_balanced_weighs_each_class_as_if_the_split_were_balanced(tmp_path: Path):
    root = build_encoded_project(tmp_path, baseline={"epochs": 1})
    meta = json.loads((root / "data" / "tfrecords" / "meta.json").read_text())
    meta["splits"]["train"]["per_class"] = {"cats": 30, "dogs": 10}
    args = argparse.Namespace(records=root / "data" / "tfrecords")
    view = stage_params.for_stage(baseline.PARAMS, root / "params.yaml")
    stage = training.TrainingStage("baseline", args, view, None, meta)
    assert stage.class_weights() is None  # train.class_weight: none
    set_params(root, train={"class_weight": "balanced"})
    view = stage_params.for_stage(baseline.PARAMS, root / "params.yaml")
    weights = training.TrainingStage("baseline", args, view, None, meta).class_weights()
    assert weights.tolist() == pytest.approx([40 / (2 * 30), 40 / (2 * 10)])  # n / (classes x n_c)


def test_balanced_weights_change_what_the_baseline_learns(tmp_path: Path):
    """Class weights reach the loss: one epoch on an imbalanced split ends with other weights than without."""
    root = build_encoded_project(tmp_path, baseline={"epochs": 1})
    for image in sorted((root / "data" / "raw" / "train" / "dogs").iterdir())[:5]:
        image.unlink()  # 8 cats, 3 dogs
    from stages import encode, split

    split.main(dvc_args_in(root, "split"))
    encode.main(dvc_args_in(root, "encode"))
    trained = {}
    for weighting in ("none", "balanced"):
        set_params(root, train={"class_weight": weighting})
        argv = stage_args(root, "baseline") + ["--model", str(root / f"{weighting}.keras")]
        baseline.main(argv + ["--logs", str(root / weighting)])
        trained[weighting] = keras.models.load_model(root / f"{weighting}.keras", safe_mode=True).get_weights()
    assert any(not np.allclose(a, b) for a, b in zip(trained["none"], trained["balanced"]))


def dvc_args_in(root: Path, stage: str) -> list[str]:
    """dvc.yaml's arguments of a data stage with its paths inside root/."""
    args = dvc_args(stage)
    return ["--params", str(root / "params.yaml")] + [
        value if value.startswith("--") else str(root / value) for value in args
    ]


def test_keep_best_early_stopping_and_a_schedule_in_a_stage(tmp_path: Path):
    root = build_encoded_project(tmp_path, baseline={"epochs": 6, "lr_schedule": "cosine", "warmup_epochs": 1})
    set_params(root, train={"keep_best": "val_loss", "patience": 1})
    baseline.main(stage_args(root, "baseline"))
    metrics = json.loads((root / "metrics" / "baseline.json").read_text())
    assert 1 <= metrics["best_epoch"] <= metrics["epochs"] <= 6
    assert steps(root, "baseline") == list(range(metrics["epochs"]))
    if metrics["epochs"] < 6:  # stopped early: exactly `patience` epochs after the best one
        assert metrics["epochs"] == metrics["best_epoch"] + 1
    model = keras.models.load_model(root / "models" / "baseline.keras", safe_mode=True)
    val = records.make_dataset(root / "data" / "tfrecords", "val", image_size=32, batch_size=8)
    scores = model.evaluate(val, verbose=0, return_dict=True)
    assert scores["loss"] == pytest.approx(metrics["val.loss"], rel=1e-4)  # the saved model is the best epoch's
    schedule = float(model.optimizer.learning_rate)  # the saved optimizer's: at the best epoch's last step
    assert metrics["params_read.baseline.lr_schedule"] == "cosine"
    if metrics["best_epoch"] == 1:  # the end of the warmup epoch: the schedule at its peak
        assert schedule == pytest.approx(0.001)
    else:  # decaying since
        assert schedule < 0.001 * (1 - 1e-6)


def test_label_smoothing_trains_three_classes_on_one_hot_targets(tmp_path: Path):
    root = build_encoded_project(
        tmp_path,
        THREE_CLASSES,
        train={"label_smoothing": 0.1},
        transfer={"epochs": 1, "batch_size": 8, "augment": NO_AUGMENTATION},  # the cached-features path
        finetune={"epochs": 2, "batch_size": 8, "lr_schedule": "cosine"},
    )
    transfer.main(stage_args(root, "transfer"))
    finetune.main(stage_args(root, "finetune") + ["--transfer-model", str(root / "models" / "transfer.keras")])
    for stage in ("transfer", "finetune"):
        metrics = json.loads((root / "metrics" / f"{stage}.json").read_text())
        assert 0 <= metrics["val.accuracy"] <= 1 and metrics["val.loss"] > 0
    assert json.loads((root / "metrics" / "transfer.json").read_text())["cached_features"] == 1
    model = keras.models.load_model(root / "models" / "finetune.keras", safe_mode=True, compile=True)
    assert model.output_shape == (None, 3)
    assert isinstance(model.loss, keras.losses.CategoricalCrossentropy) and model.loss.label_smoothing == 0.1


def test_val_features_computed_once_give_the_same_training_as_the_whole_model(tmp_path: Path):
    root = build_encoded_project(tmp_path, transfer={"epochs": 2, "batch_size": 8})  # default augmentation: on
    runs = {}
    for cache in (True, False):
        set_params(root, transfer={"cache_features": cache})
        args = stage_args(root, "transfer") + [
            "--model",
            str(root / f"{cache}.keras"),
            "--logs",
            str(root / f"{cache}"),
        ]
        transfer.main(args + ["--metrics", str(root / f"{cache}.json")])
        runs[cache] = json.loads((root / f"{cache}.json").read_text())
    assert "features_seconds" in runs[True] and "features_seconds" not in runs[False]
    for key in ("train.loss", "train.accuracy", "val.loss", "val.accuracy"):  # float32 sums in another order:
        assert runs[True][key] == pytest.approx(runs[False][key], rel=2e-5, abs=1e-6)  # 1.0e-5 apart seen here
    cached, whole = (keras.models.load_model(root / f"{c}.keras", safe_mode=True) for c in (True, False))
    assert all(np.allclose(a, b, atol=1e-6) for a, b in zip(cached.get_weights(), whole.get_weights()))
    for cache in (True, False):  # the logged val curves too, epoch by epoch
        logged = (root / f"{cache}" / "plots" / "metrics" / "eval" / "loss.tsv").read_text().splitlines()[1:]
        runs[cache] = [float(line.split("\t")[-1]) for line in logged]
    assert runs[True] == pytest.approx(runs[False], rel=2e-5)


def test_mixed_precision_is_an_option_of_every_training_stage(tmp_path: Path):
    root = build_encoded_project(tmp_path, train={"precision": "mixed_bfloat16"}, baseline={"epochs": 1})
    try:
        baseline.main(stage_args(root, "baseline"))
    finally:
        keras.mixed_precision.set_global_policy("float32")  # the policy is global: leave it as other tests expect
    metrics = json.loads((root / "metrics" / "baseline.json").read_text())
    assert np.isfinite(metrics["train.loss"]) and 0 <= metrics["val.accuracy"] <= 1
    model = keras.models.load_model(root / "models" / "baseline.keras", safe_mode=True)
    assert {layer.dtype_policy.name for layer in model.layers if layer.weights} == {"mixed_bfloat16"}
    assert all(weight.dtype == "float32" for weight in model.weights)  # the variables stay float32


def test_finetune_validates_on_activations_computed_once_with_the_same_numbers(trained: Path, tmp_path: Path):
    runs = {}
    for cache in (True, False):
        params_yaml = tmp_path / f"{cache}.yaml"
        params_yaml.write_text((trained / "params.yaml").read_text())
        raw = yaml.safe_load(params_yaml.read_text())
        raw["finetune"].update(cache_features=cache, epochs=2)
        params_yaml.write_text(yaml.safe_dump(raw))
        args = stage_args(trained, "finetune") + ["--transfer-model", str(trained / "models" / "transfer.keras")]
        outputs = ["--model", str(tmp_path / f"{cache}.keras"), "--logs", str(tmp_path / f"{cache}")]
        finetune.main([*args, *outputs, "--metrics", str(tmp_path / f"{cache}.json"), "--params", str(params_yaml)])
        runs[cache] = json.loads((tmp_path / f"{cache}.json").read_text())
    assert "features_seconds" in runs[True] and "features_seconds" not in runs[False]
    for key in ("train.loss", "val.loss", "val.accuracy"):
        assert runs[True][key] == pytest.approx(runs[False][key], rel=1e-5, abs=1e-6)
    cached, whole = (keras.models.load_model(tmp_path / f"{c}.keras", safe_mode=True) for c in (True, False))
    assert all(np.allclose(a, b, atol=1e-6) for a, b in zip(cached.get_weights(), whole.get_weights()))


def test_finetune_without_augmentation_trains_its_upper_layers_on_activations_computed_once(tmp_path: Path):
    root = build_encoded_project(  # no dropout either: the two paths then draw no random numbers at all
        tmp_path, model={"dropout": 0.0}, transfer={"epochs": 1, "augment": NO_AUGMENTATION}, finetune={"epochs": 2}
    )
    transfer.main(stage_args(root, "transfer"))
    runs = {}
    for cache in (True, False):
        set_params(root, finetune={"cache_features": cache})
        args = stage_args(root, "finetune") + ["--transfer-model", str(root / "models" / "transfer.keras")]
        outputs = ["--model", str(root / f"{cache}.keras"), "--logs", str(root / f"{cache}")]
        finetune.main([*args, *outputs, "--metrics", str(root / f"{cache}.json")])
        runs[cache] = json.loads((root / f"{cache}.json").read_text())
    assert (runs[True]["cached_features"], runs[False]["cached_features"]) == (1, 0)
    for key in ("train.loss", "train.accuracy", "val.loss", "val.accuracy"):
        assert runs[True][key] == pytest.approx(runs[False][key], rel=1e-4, abs=1e-5)
    cached, whole = (keras.models.load_model(root / f"{c}.keras", safe_mode=True) for c in (True, False))
    assert [w.name for w in cached.weights] == [w.name for w in whole.weights]  # the whole model is saved
    assert all(np.allclose(a, b, rtol=1e-4, atol=1e-5) for a, b in zip(cached.get_weights(), whole.get_weights()))
    assert runs[True]["params.trainable"] == runs[False]["params.trainable"]


def test_a_resumed_finetune_on_cached_activations_saves_what_it_trained(tmp_path: Path, monkeypatch):
    root = build_encoded_project(tmp_path, transfer={"epochs": 1, "augment": NO_AUGMENTATION}, finetune={"epochs": 2})
    transfer.main(stage_args(root, "transfer"))
    argv = stage_args(root, "finetune") + ["--transfer-model", str(root / "models" / "transfer.keras")]
    real_end = checkpoints.Checkpoint.on_epoch_end

    def killed_after_one_epoch(self, epoch, logs=None):
        real_end(self, epoch, logs)
        raise KeyboardInterrupt  # as a kill right after the checkpoint of epoch 1

    monkeypatch.setattr(checkpoints.Checkpoint, "on_epoch_end", killed_after_one_epoch)
    with pytest.raises(KeyboardInterrupt):
        finetune.main(argv)
    monkeypatch.undo()
    finetune.main(argv)  # resumes: the model it trains is a copy loaded from the checkpoint
    metrics = json.loads((root / "metrics" / "finetune.json").read_text())
    assert metrics["cached_features"] == 1 and steps(root, "finetune") == [1, 2]
    saved = keras.models.load_model(root / "models" / "finetune.keras", safe_mode=True)
    saved.compile(loss=keras.losses.BinaryCrossentropy(from_logits=True))
    val = records.make_dataset(root / "data" / "tfrecords", "val", image_size=32, batch_size=8)
    scores = saved.evaluate(val, verbose=0, return_dict=True)
    assert scores["loss"] == pytest.approx(metrics["val.loss"], rel=1e-4)  # the weights it trained, not transfer's


def test_models_trained_on_cached_features_are_saved_with_the_optimizer_state_that_trained_them(tmp_path: Path):
    # The head (transfer) or the layers above the cut (finetune) trained as a model of their own, sharing the
    # saved model's variables: the saved file holds that optimizer, so Keras' default load (compile=True) restores
    # its state instead of warning that an unbuilt optimizer's 2 variables do not fit.
    root = build_encoded_project(
        tmp_path,
        transfer={"epochs": 2, "batch_size": 8, "augment": NO_AUGMENTATION},  # 16 train images: 2 steps an epoch
        finetune={"epochs": 1, "batch_size": 8},
    )
    transfer.main(stage_args(root, "transfer"))
    finetune.main(stage_args(root, "finetune") + ["--transfer-model", str(root / "models" / "transfer.keras")])
    for stage, steps_trained in (("transfer", 4), ("finetune", 2)):
        assert json.loads((root / "metrics" / f"{stage}.json").read_text())["cached_features"] == 1
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model = keras.models.load_model(root / "models" / f"{stage}.keras", safe_mode=True, compile=True)
        assert not [w for w in caught if "Skipping variable loading for optimizer" in str(w.message)], stage
        assert int(model.optimizer.iterations) == steps_trained, stage
        slots = [v for v in model.optimizer.variables if v.shape == model.trainable_variables[-1].shape]
        assert any(np.abs(np.asarray(slot)).max() > 0 for slot in slots), stage  # trained state, not zeros

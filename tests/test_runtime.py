"""TensorFlow's start-up lines are filtered for every entry point, under both oneDNN settings; real errors and
warnings still show; PIPELINE_VERBOSE shows everything; the machine configuration is described correctly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stages.lib import runtime
from tests.conftest import ROOT

# What TensorFlow 2.21 printed on import here with oneDNN on (the second block repeats the first two lines).
STARTUP = """\
WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
I0000 00:00:1795617443.306392    2262 port.cc:153] oneDNN custom operations are on. You may see slightly \
different numerical results due to floating-point round-off errors from different computation orders. To turn \
them off, set the environment variable `TF_ENABLE_ONEDNN_OPTS=0`.
I0000 00:00:1795617443.357784    2262 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use \
available CPU instructions in performance-critical operations.
To enable the following instructions: AVX2 AVX512F AVX512_VNNI AVX512_BF16 FMA, in other operations, rebuild \
TensorFlow with the appropriate compiler flags.
"""


def python(code: str, **env: str) -> subprocess.CompletedProcess:
    """`code` in a fresh interpreter from the project root; env on top of this one's, without the log switches."""
    base = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", runtime.VERBOSE_ENV)}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=base | env, capture_output=True, text=True, timeout=300
    )


def test_drop_startup_noise_removes_the_known_lines_and_keeps_the_rest():
    kept = [
        "E0000 00:00:1795617443.306392    2262 cuda_dnn.cc:8310] Unable to register cuDNN factory\n",
        "W0000 00:00:1795617443.306392    2262 gpu_device.cc:2342] Cannot dlopen some GPU libraries.\n",
        "/x/y.py:3: UserWarning: something the user should see\n",
        "Traceback (most recent call last):\n",
    ]
    assert runtime.drop_startup_noise(STARTUP * 2) == ""
    assert runtime.drop_startup_noise("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n") == ""
    quantizer = "fully_quantize: 0, inference_type: 6, input_inference_type: FLOAT32, output_inference_type: FLOAT32\n"
    assert runtime.drop_startup_noise(quantizer) == ""  # TFLite's, on every int8 conversion (export)
    assert runtime.drop_startup_noise(kept[0] + STARTUP + "".join(kept[1:])) == "".join(kept)


@pytest.mark.parametrize("onednn", ["0", "1"])
def test_importing_tensorflow_after_stages_prints_nothing(onednn):
    done = python("import stages, keras, tensorflow as tf; print(tf.constant(2) + 1)", TF_ENABLE_ONEDNN_OPTS=onednn)
    assert done.returncode == 0 and done.stderr == "" and done.stdout.strip() == "tf.Tensor(3, shape=(), dtype=int32)"


def test_without_the_filter_tensorflow_prints_its_startup_lines():
    """The lines the filter removes exist: with oneDNN forced on, a plain import prints them (so the test above
    would fail without the filter on every CPU), and PIPELINE_VERBOSE=1 shows them through the filter too."""
    plain = python("import tensorflow", TF_ENABLE_ONEDNN_OPTS="1")
    verbose = python("import stages, tensorflow", TF_ENABLE_ONEDNN_OPTS="1", PIPELINE_VERBOSE="1")
    for done in (plain, verbose):
        assert "oneDNN custom operations are on" in done.stderr
        assert runtime.drop_startup_noise(done.stderr) == ""  # nothing else was printed


def test_lines_written_during_the_import_that_are_not_noise_still_show(tmp_path: Path):
    """An error or a Python warning printed while TensorFlow is imported reaches stderr, in order."""
    package = tmp_path / "tensorflow"  # a stand-in found first on sys.path, so the hook wraps its import
    package.mkdir()
    (package / "__init__.py").write_text(
        "import os, warnings\n"
        "os.write(2, b'WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\\n')\n"
        "os.write(2, b'E0000 00:00:1.2    7 loader.cc:1] a real error\\n')\n"
        "warnings.warn('a real warning')\n"
    )
    done = python(f"import sys; sys.path.insert(0, {str(tmp_path)!r}); import stages, tensorflow; print('ok')")
    assert done.returncode == 0 and done.stdout == "ok\n"
    lines = done.stderr.splitlines()
    assert lines[0] == "E0000 00:00:1.2    7 loader.cc:1] a real error"
    assert "UserWarning: a real warning" in lines[1] and len(lines) == 3  # the warning and its source line


def test_a_failing_import_still_shows_its_traceback(tmp_path: Path):
    package = tmp_path / "tensorflow"
    package.mkdir()
    (package / "__init__.py").write_text("raise ImportError('libtensorflow.so: cannot open shared object file')\n")
    done = python(f"import sys; sys.path.insert(0, {str(tmp_path)!r}); import stages, tensorflow")
    assert done.returncode == 1
    assert "Traceback" in done.stderr and "ImportError: libtensorflow.so: cannot open" in done.stderr


@pytest.mark.parametrize("onednn", ["0", "1"])
def test_machine_reports_the_onednn_setting_of_the_process(onednn):
    code = "import json, stages; from stages.lib import runtime; print(json.dumps(runtime.machine()))"
    done = python(code, TF_ENABLE_ONEDNN_OPTS=onednn)
    machine = json.loads(done.stdout)
    assert machine["machine.onednn"] == int(onednn)
    assert done.stderr == ""


def test_cpu_info_reads_the_model_and_the_kernel_features(tmp_path: Path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nmodel name\t: AMD EPYC 9B14\nflags\t\t: fpu sse2 avx2 fma avx512f avx512_bf16 sha_ni\n\n"
        "processor\t: 1\nmodel name\t: AMD EPYC 9B14\nflags\t\t: fpu sse2 avx2 fma avx512f avx512_bf16 sha_ni\n"
    )
    assert runtime.cpu_info(cpuinfo) == ("AMD EPYC 9B14", ["avx2", "fma", "avx512f", "avx512_bf16"])
    assert runtime.cpu_info(tmp_path / "absent") == ("unknown", [])


@pytest.mark.slow
def test_tensorflow_s_own_log_settings_do_not_silence_its_start_up_lines():
    """Why quiet_tensorflow_import exists: with oneDNN on, TensorFlow prints these before it reads its log level.
    When this fails, TF_CPP_MIN_LOG_LEVEL alone is quiet and the import filter can go."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "1", "ABSL_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, "-c", "import tensorflow"], env=env, capture_output=True, text=True)
    assert done.returncode == 0 and "oneDNN custom operations are on" in done.stderr

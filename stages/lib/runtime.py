"""The process TensorFlow runs in: its start-up lines filtered out, and the facts that decide its numbers.

TensorFlow 2.21 prints a few lines on stderr while it is imported, before its log level is read, so
`TF_CPP_MIN_LOG_LEVEL` cannot silence them: absl's "All log messages before absl::InitializeLog() ..."
warning, "oneDNN custom operations are on ..." (only where oneDNN is on: by default on x86 CPUs with
AVX512_VNNI, AVX512_BF16 or AMX) and the CPU-feature notice. They would sit between a stage's own lines
and between predict's per-file error lines. `quiet_tensorflow_import()` (called by `stages/__init__.py`,
so it covers every stage, predict and the benchmarks) points fd 2 at a temporary file while `tensorflow`
is imported and then passes on every line except those INFO lines, so warnings and errors still show.
`PIPELINE_VERBOSE=1` turns the filter off and leaves TensorFlow's log level at its default.

Why not TensorFlow's or absl's own settings: with oneDNN on, TF_CPP_MIN_LOG_LEVEL=3 (also with GLOG_minloglevel=2
or ABSL_MIN_LOG_LEVEL=2) still prints the absl warning and the oneDNN notice, since both come before TensorFlow
reads its level; only TF_ENABLE_ONEDNN_OPTS=0 silences them, which changes the numbers. tests/test_runtime.py
holds that: the day it fails, TensorFlow's own setting suffices and this filter can go.

Whether oneDNN is on changes numbers in the last bits (it reorders floating-point sums), and so, through
training, the metrics: identical numbers hold per machine configuration. `machine()` describes that
configuration; the stages record it in their metrics and the report prints it.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

VERBOSE_ENV = "PIPELINE_VERBOSE"
ONEDNN_ENV = "TF_ENABLE_ONEDNN_OPTS"

_STARTUP_NOISE = re.compile(
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|I\d{4} [\d:.]+ +\d+ [\w.]+:\d+\] .*"  # an absl INFO line: oneDNN notice, CPU feature notice
    r"|To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler flags\."
    r"|INFO: Created TensorFlow Lite XNNPACK delegate for CPU\."  # TFLite, on a process's first inference
    r"|fully_quantize: \d+, inference_type: \d+, input_inference_type: \w+, output_inference_type: \w+"  # TFLite's
    # quantizer, on every full-integer conversion (export's int8 model)
)
# CPU features that decide which kernels TensorFlow and oneDNN run (the ones TensorFlow's notice names, and AMX).
KERNEL_FEATURES = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_bf16")


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


def drop_startup_noise(text: str) -> str:
    """`text` without TensorFlow's start-up INFO lines; every other line is kept as it was."""
    lines = text.splitlines(keepends=True)
    return "".join(line for line in lines if not _STARTUP_NOISE.fullmatch(line.rstrip("\r\n")))


@contextlib.contextmanager
def stderr_filtered() -> Iterator[None]:
    """While the block runs, fd 2 (C++ and Python writes alike) goes to a temporary file; afterwards its
    text minus the start-up noise is written to stderr, also when the block raised."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = drop_startup_noise(capture.read().decode("utf-8", "replace"))
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()


class _FilteredLoader(importlib.abc.Loader):
    """The real loader of `tensorflow`, run inside stderr_filtered()."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        module.__loader__ = module.__spec__.loader = self._loader  # the module keeps its own loader
        with stderr_filtered():
            self._loader.exec_module(module)

    def __getattr__(self, name: str):
        return getattr(self._loader, name)


class _QuietTensorFlowFinder(importlib.abc.MetaPathFinder):
    """Finds `tensorflow` as the normal path finder does, with its loader wrapped in _FilteredLoader."""

    def find_spec(self, fullname, path, target=None):
        if fullname != "tensorflow":
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _FilteredLoader(spec.loader)
        return spec


def quiet_tensorflow_import() -> None:
    """Filter TensorFlow's start-up lines whenever it is first imported (unless PIPELINE_VERBOSE is set)."""
    if verbose():
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # INFO and WARNING logged after start-up (errors show)
    if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietTensorFlowFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlowFinder())


def cpu_info(cpuinfo: Path = Path("/proc/cpuinfo")) -> tuple[str, list[str]]:
    """(CPU model name, the KERNEL_FEATURES it has); ("unknown", []) where /proc/cpuinfo is not there."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return "unknown", []
    model = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    flags = re.search(r"^flags\s*:\s*(.+)$", text, re.M)
    present = set(flags.group(1).split()) if flags else set()
    return (model.group(1).strip() if model else "unknown"), [f for f in KERNEL_FEATURES if f in present]


def machine() -> dict[str, str | int]:
    """What decides the numbers beyond params and data, as flat metrics keys: oneDNN on (1) or off (0),
    and the CPU (model and kernel-relevant features). Same values, same numbers (same library versions)."""
    from stages.lib.internals import onednn_enabled  # TensorFlow's private switch

    model, features = cpu_info()
    return {"machine.onednn": int(onednn_enabled()), "machine.cpu": model, "machine.cpu_features": " ".join(features)}

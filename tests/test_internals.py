"""Keras' and TensorFlow's private names, each checked where this project relies on it: a canary per name, red on
an upgrade that moves it or changes its call signature."""

from __future__ import annotations

import ast
import inspect
import os
import subprocess
import sys

import pytest

from stages.lib import internals
from stages.lib.errors import PipelineError
from tests.conftest import ROOT


@pytest.mark.parametrize("private", internals.PRIVATE, ids=lambda p: p.attribute)
def test_each_private_name_is_there_with_the_signature_relied_on(private):
    found = internals.find(private)
    assert callable(found)
    try:
        assert tuple(inspect.signature(found).parameters) == private.parameters
    except ValueError:  # a C++ function without a signature: found by its name
        assert private.module.startswith("tensorflow.")


def test_a_name_gone_or_changed_is_one_line_naming_it():
    gone = internals.Private("keras.src.backend.tensorflow.trainer", "no_such_function", ())
    with pytest.raises(
        PipelineError,
        match=r"^keras\.src\.backend\.tensorflow\.trainer\.no_such_function is gone in "
        r"Keras 3\.[\d.]+ / TensorFlow 2\.[\d.]+; this project relies on it",
    ):
        internals.find(gone)
    changed = internals.Private("keras.src.random.seed_generator", "SeedGenerator.next", ("self",))
    with pytest.raises(PipelineError, match=r"SeedGenerator\.next takes \(self, ordered\), not \(self\) in Keras"):
        internals.find(changed)


def test_the_private_patches_are_installed_only_by_the_strategies_that_need_them():
    from keras.src.backend.tensorflow import trainer
    from keras.src.random.seed_generator import SeedGenerator

    from stages.lib import distribution

    distribution.make_strategy("none", 600)
    distribution.make_strategy("auto", 600)  # one CPU, no GPU: a single replica
    assert not getattr(trainer.reduce_per_replica, "multi_worker_fix", False)
    assert not getattr(SeedGenerator.next, "per_replica", False)


@pytest.mark.slow
@pytest.mark.parametrize("switch", ["0", "1"])
def test_onednn_enabled_reads_tensorflow_s_own_switch(switch):
    script = "import stages; from stages.lib import internals; print(internals.onednn_enabled())"
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": switch}
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True)
    assert done.stdout.strip() == str(switch == "1")


FRAMEWORKS = ("keras", "tensorflow", "ai_edge_litert", "tf_keras")
PUBLIC_UNDERSCORED = {"os._exit"}  # the standard library's, documented: not a framework's private name


def test_no_private_framework_name_outside_this_module():
    """A framework's private module (keras.src, tensorflow.python, any `_` part) or `_`-prefixed attribute, by name
    or as text given to getattr / setattr / hasattr, is used in internals.py alone, where it is checked. The project's
    own `_` names are its own: those it defines are allowed everywhere."""
    code = [*(ROOT / "stages").rglob("*.py"), *(ROOT / "benchmarks").glob("*.py"), *(ROOT / "scripts").glob("*.py")]
    trees = {path: ast.parse(path.read_text()) for path in code}
    ours = set()  # every name the project defines: functions, classes, attributes, variables
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.ClassDef):
                ours.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                ours.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                ours.add(node.id)

    def private(name: str) -> bool:
        return name.startswith("_") and not name.startswith("__") and name not in ours

    found = []
    for path, tree in trees.items():
        if path.name == "internals.py" and path.parent.name == "lib":
            continue
        where = path.relative_to(ROOT).as_posix()
        texts = {  # module-level NAME = "text", which getattr(x, NAME) would use
            target.id: node.value.value
            for node in tree.body
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
            for target in node.targets
            if isinstance(target, ast.Name)
        }
        for node in ast.walk(tree):
            modules = []
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                modules = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            for module in modules:
                parts = module.split(".")
                if parts[0] in FRAMEWORKS and (
                    any(part.startswith("_") for part in parts) or parts[1:2] in (["src"], ["python"])
                ):
                    found.append(f"{where}:{node.lineno}: {module}")
            if isinstance(node, ast.Attribute) and private(node.attr):
                if f"{getattr(node.value, 'id', '')}.{node.attr}" not in PUBLIC_UNDERSCORED:
                    found.append(f"{where}:{node.lineno}: .{node.attr}")
            by_name = isinstance(node, ast.Call) and getattr(node.func, "id", "") in ("getattr", "setattr", "hasattr")
            if by_name and len(node.args) > 1:
                name = node.args[1]
                text = name.value if isinstance(name, ast.Constant) else texts.get(getattr(name, "id", ""))
                if isinstance(text, str) and private(text):
                    found.append(f"{where}:{node.lineno}: {text!r}")
    assert found == []


def test_the_per_tensor_switch_is_an_attribute_of_a_converter():
    """TFLiteConverter's constructor sets it: a canary for internals.per_tensor_int8 (a converter of a trivial
    function, no SavedModel)."""
    import tensorflow as tf

    function = tf.function(lambda x: x * 2.0, input_signature=[tf.TensorSpec((1, 2), tf.float32)])
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function.get_concrete_function()], function)
    assert getattr(converter, internals.PER_TENSOR_SWITCH) is False
    internals.per_tensor_int8(converter)
    assert getattr(converter, internals.PER_TENSOR_SWITCH) is True
    with pytest.raises(PipelineError, match=r"^export\.int8_per_channel: false needs TFLiteConverter\._experimental"):
        internals.per_tensor_int8(object())

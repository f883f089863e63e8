"""The pretrained bases registry: every entry describes its base truly, and a new base is one entry."""

from __future__ import annotations

import pytest
import yaml

from stages.lib import models, params, training
from stages.lib.bases import BASES, Base
from tests.conftest import ROOT
from tests.test_models import transfer_model


@pytest.mark.parametrize("name", list(BASES))
def test_every_registered_base_builds_and_its_own_fine_tune_at_is_inside_it(name: str):
    base = models.build_base(name, BASES[name].min_size, None)
    assert 0 < BASES[name].fine_tune_at < len(base.layers)
    assert BASES[name].weights_file(160).endswith(".h5")


def test_a_new_base_is_one_registry_entry(monkeypatch: pytest.MonkeyPatch):
    """README "Extending": an entry in bases.BASES is all it takes for params, the transfer model, fine-tuning."""
    entry = Base("MobileNetV3Small", "none", lambda _: "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5",
                 "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v3/", 139)  # fmt: skip
    monkeypatch.setitem(BASES, "mobilenet_v3_small", entry)
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["model"] |= {"base": "mobilenet_v3_small", "fine_tune_at": None, "image_size": 32}
    assert params.parse(raw).model.base == "mobilenet_v3_small"
    model = transfer_model(size=32, base="mobilenet_v3_small")
    models.unfreeze_from(model, entry.fine_tune_at, "mobilenet_v3_small")
    assert 0 < training.count_params(model)["params.trainable"] < model.count_params()


def test_registry_entries_need_no_keras():
    """params.py reads the registry on every stage start; stages without TensorFlow must not pay for Keras."""
    import subprocess
    import sys

    code = "import sys, stages.lib.params; print('keras' in sys.modules, 'tensorflow' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]

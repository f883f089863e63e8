from __future__ import annotations

import itertools

from stages.lib.keys import class_key

HOSTILE = ["macro", "weighted", "total", "precision", "class", "a.b", "a", "b.class.c", "None", "", "café"]


def test_class_keys_have_one_form():
    assert class_key("dogs", prefix="train") == "train.class.dogs"
    assert class_key("dogs", "f1", prefix="finetune") == "finetune.class.dogs.f1"
    assert class_key("a.b", "recall") == "class.a.b.recall"  # the name runs to the last `.`


def test_no_class_name_collides_with_another_class_or_an_aggregate_key():
    aggregates = {"finetune.macro.f1", "finetune.weighted.f1", "finetune.accuracy", "finetune.precision"}
    aggregates |= {"train.total", "train.macro", "finetune.f1"}
    per_class = {
        (name, metric): class_key(name, metric, prefix="finetune") for name in HOSTILE for metric in ("f1", "recall")
    }
    per_split = {name: class_key(name, prefix="train") for name in HOSTILE}
    assert len(set(per_class.values())) == len(per_class) and len(set(per_split.values())) == len(per_split)
    assert not (set(per_class.values()) | set(per_split.values())) & aggregates
    for (name, metric), key in per_class.items():  # each key reads back as its class and metric
        assert key.removeprefix("finetune.class.").rpartition(".") == (name, ".", metric)
    for a, b in itertools.combinations(HOSTILE, 2):
        assert class_key(a, prefix="train") != class_key(b, prefix="train")

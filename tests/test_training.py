from __future__ import annotations

import numpy as np
import pytest

from stages.lib import training


def test_learning_rate_schedules_warm_up_then_hold_or_decay():
    assert training.learning_rate(0.1, "constant", 0, epochs=10, steps_per_epoch=5) == 0.1  # the reference
    cosine = training.learning_rate(0.1, "cosine", 0, epochs=10, steps_per_epoch=5)
    assert [float(cosine(step)) for step in (0, 25, 50)] == pytest.approx([0.1, 0.05, 0.0], abs=1e-7)
    warm = training.learning_rate(0.1, "cosine", 2, epochs=10, steps_per_epoch=5)  # 10 warmup steps, then 40
    assert [float(warm(step)) for step in (0, 5, 10, 30, 50)] == pytest.approx([0, 0.05, 0.1, 0.05, 0], abs=1e-7)
    held = training.learning_rate(0.1, "constant", 2, epochs=10, steps_per_epoch=5)
    assert [float(held(step)) for step in (0, 5, 10, 30, 49)] == pytest.approx([0, 0.05, 0.1, 0.1, 0.1], abs=1e-7)


def test_one_view_each_gives_every_image_once_an_epoch_in_a_view_drawn_anew_each_epoch():
    images, views = 12, 4
    features = np.array([[[10 * i + k] for k in range(views)] for i in range(images)], np.float32)  # (12, 4, 1)
    labels = np.arange(images)

    def epochs(dataset) -> list[dict[int, int]]:  # per epoch: image -> the view it came in
        return [{int(y): int(x[0]) - 10 * int(y) for x, y in dataset} for _ in range(3)]

    seen = epochs(training.one_view_each(features, labels, seed=1))
    assert all(sorted(epoch) == list(range(images)) for epoch in seen)  # each image once, with its own label
    assert all(0 <= view < views for epoch in seen for view in epoch.values())
    assert seen[0] != seen[1] != seen[2]  # other draws every epoch
    assert len({view for epoch in seen for view in epoch.values()}) == views  # all views in use
    assert epochs(training.one_view_each(features, labels, seed=1)) == seen  # seeded

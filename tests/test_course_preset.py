"""--preset course is the course's Keras run as the course states it (docs/learn.md): sigmoid outputs with Keras'
categorical cross-entropy (--output sigmoid), pixels in [0, 1] (--no-normalize), every 4th training and
validation image (--every 4)."""
import math

import torch

import nnbasics.train.data as nndata
from nnbasics import train


def test_the_course_preset_is_the_courses_keras_setup():
    c = train.parse_args(["--preset", "course"])
    assert (c.hidden, c.activation, c.init, c.lr, c.momentum, c.schedule) == ([128], "sigmoid", "xavier", 0.01, 0.0,
                                                                              "constant")
    assert (c.epochs, c.batch_size, c.dropout, c.label_smoothing, c.shift) == (100, 128, 0.0, 0.0, 0)
    assert (c.output, c.normalize, c.every, c.limit_train) == ("sigmoid", False, 4, None)
    d = train.parse_args(["--preset", "course", "--output", "logits", "--normalize", "--every", "1"])
    assert (d.output, d.normalize, d.every) == ("logits", True, 1)


def test_sigmoid_outputs_take_keras_categorical_cross_entropy():
    """Keras divides the sigmoid outputs by their sum, then takes -log of the true class's share."""
    z = torch.randn(6, 10, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 10, (6,))
    for impl in ("custom", "builtin"):
        loss = train.make_loss(train.Config(output="sigmoid", label_smoothing=0.0, impl=impl))
        s = torch.sigmoid(z)
        want = -(s / s.sum(1, keepdim=True)).gather(1, t[:, None]).log()
        torch.testing.assert_close(loss(z, t), want.mean())
        torch.testing.assert_close(loss(z, t, reduction="sum"), want.sum())
        (got,), (expected,) = torch.autograd.grad(loss(z, t), z), torch.autograd.grad(want.mean(), z)
        torch.testing.assert_close(got, expected)


def test_every_and_no_normalize_reach_the_batches(tmp_path, mnist, monkeypatch):
    seen, batches = [], nndata.batches

    def spy(split, batch_size, *, mean, std, **kwargs):
        seen.append((len(split), mean, std))
        return batches(split, batch_size, mean=mean, std=std, **kwargs)

    monkeypatch.setattr(nndata, "batches", spy)
    config = train.Config(hidden=[16], epochs=1, batch_size=512, every=8, normalize=False, output="sigmoid",
                          quiet=True, out=str(tmp_path / "run"), shift=0)
    summary = train.run(config, data=mnist)
    sizes = {n for n, _, _ in seen}
    assert len(mnist.train) // 8 + (len(mnist.train) % 8 > 0) in sizes  # every 8th training image
    assert len(mnist.val) // 8 + (len(mnist.val) % 8 > 0) in sizes  # and every 8th validation image
    assert len(mnist.test) in sizes  # the test set whole
    assert {(m, s) for _, m, s in seen} == {(0.0, 1.0)}  # pixels in [0, 1]
    assert math.isfinite(summary["test_loss"]) and summary["test_loss"] < 2.3026  # it learned: below log(10)

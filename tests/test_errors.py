"""Every input a user can get wrong gets one clear exception that names the offending value,
of the type torch.nn.functional raises for the same input (so ``except ValueError:`` written
for torch keeps working)."""
import functools
import warnings

import pytest
import torch
import torch.nn.functional as TF

import nnbasics.functional as F

_long = torch.long
# One call per check in nnbasics._arguments (and the dtype checks of the ops), made with the
# functional module M: nnbasics.functional, or torch.nn.functional for the expected type.
BAD_CALLS = {
    "reduction": lambda M: M.mse_loss(torch.randn(4), torch.randn(4), reduction="avg"),
    "ce reduction": lambda M: M.cross_entropy(torch.randn(4, 5), torch.zeros(4, dtype=_long), reduction="avg"),
    "bce reduction": lambda M: M.binary_cross_entropy(torch.rand(4), torch.rand(4), reduction="avg"),
    "ce weight requires grad": lambda M: M.cross_entropy(torch.randn(4, 5), torch.zeros(4, dtype=_long),
                                                         weight=torch.ones(5, requires_grad=True)),
    "bce weight requires grad": lambda M: M.binary_cross_entropy(torch.rand(4), torch.rand(4),
                                                                 weight=torch.ones(4, requires_grad=True)),
    "bce_logits pos_weight requires grad": lambda M: M.binary_cross_entropy_with_logits(
        torch.rand(4), torch.rand(4), pos_weight=torch.ones(4, requires_grad=True)),
    "bce target shape": lambda M: M.binary_cross_entropy(torch.rand(4), torch.rand(5)),
    "bce_logits target shape": lambda M: M.binary_cross_entropy_with_logits(torch.rand(4), torch.rand(5)),
    "mse weight shape": lambda M: M.mse_loss(torch.rand(4), torch.rand(4), weight=torch.rand(5)),
    "mse integer input": lambda M: M.mse_loss(torch.ones(3, dtype=_long), torch.ones(3, dtype=_long)),
    "linear features": lambda M: M.linear(torch.randn(4, 10), torch.randn(3, 11)),
    "linear 0-d input": lambda M: M.linear(torch.tensor(1.0), torch.randn(3, 1)),
    "linear bias shape": lambda M: M.linear(torch.randn(4, 5), torch.randn(3, 5), torch.randn(4)),
    "hardtanh bounds": lambda M: M.hardtanh(torch.randn(3), 2.0, 1.0),
    "dropout p": lambda M: M.dropout(torch.randn(3), 1.5),
    "softmax dim": lambda M: M.softmax(torch.randn(3), 2),
    "softmax integer input": lambda M: M.softmax(torch.ones(3, dtype=_long), 0),
    "log_softmax integer input": lambda M: M.log_softmax(torch.ones(3, dtype=_long), 0),
    "leaky_relu integer input": lambda M: M.leaky_relu(torch.ones(3, dtype=_long)),
    "ce integer input": lambda M: M.cross_entropy(torch.ones(4, 5, dtype=torch.int32), torch.zeros(4, dtype=_long)),
    "ce soft integer input": lambda M: M.cross_entropy(torch.ones(4, 5, dtype=_long), torch.rand(4, 5)),
    "ce target dtype": lambda M: M.cross_entropy(torch.randn(4, 5), torch.zeros(4, dtype=torch.int32)),
    "ce float target of another shape": lambda M: M.cross_entropy(torch.randn(4, 5), torch.zeros(4)),
    "ce 0-d input, 0-d float target": lambda M: M.cross_entropy(torch.tensor(1.0), torch.tensor(1.0)),
    "ce 0-d input, 0-d integer target": lambda M: M.cross_entropy(torch.tensor(1.0), torch.tensor(0)),
    "ce 0-d input, 1-d target": lambda M: M.cross_entropy(torch.tensor(1.0), torch.tensor([0])),
    "ce batch size": lambda M: M.cross_entropy(torch.randn(4, 5), torch.zeros(3, dtype=_long)),
    "ce N-d batch size": lambda M: M.cross_entropy(torch.randn(2, 5, 3), torch.zeros(3, 3, dtype=_long)),
    "ce unbatched, 1-d target": lambda M: M.cross_entropy(torch.randn(5), torch.zeros(2, dtype=_long)),
    "ce N-d target shape": lambda M: M.cross_entropy(torch.randn(2, 5, 3), torch.zeros(2, 4, dtype=_long)),
    "ce N-d target rank": lambda M: M.cross_entropy(torch.randn(2, 5, 3), torch.zeros(2, dtype=_long)),
    "ce 2-d target": lambda M: M.cross_entropy(torch.randn(4, 5), torch.zeros(4, 2, dtype=_long)),
    "ce target range": lambda M: M.cross_entropy(torch.randn(4, 5), torch.tensor([0, 1, 7, 2])),
    "ce negative target": lambda M: M.cross_entropy(torch.randn(4, 5), torch.tensor([0, 1, -1, 2])),
    "ce soft integer target": lambda M: M.cross_entropy(torch.randn(4, 5), torch.zeros(4, 5, dtype=_long)),
    "ce soft ignore_index": lambda M: M.cross_entropy(torch.randn(4, 5), torch.rand(4, 5), ignore_index=0),
    "ce label_smoothing": lambda M: M.cross_entropy(torch.randn(4, 5), torch.zeros(4, dtype=_long), label_smoothing=1.5),
    "ce soft label_smoothing": lambda M: M.cross_entropy(torch.randn(4, 5), torch.rand(4, 5), label_smoothing=1.5),
    "ce weight shape": lambda M: M.cross_entropy(torch.randn(4, 5), torch.zeros(4, dtype=_long), weight=torch.ones(4)),
    "ce soft weight shape": lambda M: M.cross_entropy(torch.randn(4, 5), torch.rand(4, 5), weight=torch.ones(4)),
    "bce probabilities": lambda M: M.binary_cross_entropy(torch.tensor([0.5, 1.5]), torch.rand(2)),
    "relu in place on a leaf": lambda M: M.relu(torch.ones(3, requires_grad=True), inplace=True),
}


def _raised(call):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            call()
        except Exception as exc:  # noqa: BLE001 - any type: the type is what is compared
            return type(exc)
    return None


# Where torch changed the type between releases, nnbasics raises the newer one (torch 2.13 and
# 2.14 agree); the older release's type is recorded, not guessed (checked on torch 2.4.1).
OLDER_TORCH_TYPE = {"ce unbatched, 1-d target": RuntimeError}


@pytest.mark.parametrize("name", list(BAD_CALLS))
def test_bad_input_raises_torchs_exception_type(name, impl):
    """The type is torch's own, found by calling torch with the same input (not written down here).
    nnbasics' exception must be caught by ``except`` of torch's type: the same type, or a subclass
    (torch before 2.13 raised RuntimeError for integer logits, whose subclass NotImplementedError
    is what torch 2.13 raises, and nnbasics)."""
    expected = _raised(lambda: BAD_CALLS[name](TF))
    assert expected is not None, f"torch accepts {name!r}: the case tests nothing"
    if expected is TypeError:  # an argument this torch does not have (mse_loss's weight on torch 2.4)
        pytest.skip(f"this torch's signature does not take the arguments of {name!r}")
    mod = type("M", (), {n: staticmethod(functools.partial(getattr(F, n), impl=impl)) for n in F.__all__})
    got = _raised(lambda: BAD_CALLS[name](mod))
    assert got is not None and (issubclass(got, expected) or OLDER_TORCH_TYPE.get(name) is expected), \
        f"nnbasics raised {got}, torch {expected}"


def test_negative_label_smoothing_is_refused():
    """torch treats label_smoothing < 0 as 0 without a word; nnbasics refuses it (a mistake hidden
    otherwise), with torch's type for a smoothing out of range."""
    x, t = torch.randn(4, 5), torch.zeros(4, dtype=_long)
    assert torch.equal(TF.cross_entropy(x, t, label_smoothing=-0.1), TF.cross_entropy(x, t))
    with pytest.raises(RuntimeError, match=r"label_smoothing must be in \[0, 1\], got -0.1"):
        F.cross_entropy(x, t, label_smoothing=-0.1)


def test_linear_size_mismatch_names_both_sizes():
    with pytest.raises(RuntimeError, match=r"input of shape \(4, 10\).*in_features=11"):
        F.linear(torch.randn(4, 10), torch.randn(3, 11))


def test_linear_weight_and_bias_shapes():
    with pytest.raises(RuntimeError, match=r"weight must be 2-D .*\(3,\)"):
        F.linear(torch.randn(4, 3), torch.randn(3))
    with pytest.raises(RuntimeError, match=r"bias must have shape \(3,\), got \(4,\)"):
        F.linear(torch.randn(4, 5), torch.randn(3, 5), torch.randn(4))


@pytest.mark.parametrize("bad", [5, -1, 17])
def test_cross_entropy_target_out_of_range_names_the_value(bad):
    target = torch.tensor([0, 1, bad, 2])
    with pytest.raises(IndexError, match=rf"target value {bad} at index \(2,\) is outside \[0, 5\)"):
        F.cross_entropy(torch.randn(4, 5), target)


def test_cross_entropy_ignore_index_may_lie_outside_the_classes():
    loss = F.cross_entropy(torch.randn(3, 5), torch.tensor([0, -100, 4]))
    assert torch.isfinite(loss)


def test_cross_entropy_batch_size_mismatch():
    with pytest.raises(ValueError, match=r"batch sizes differ \(4 vs 3\)"):
        F.cross_entropy(torch.randn(4, 5), torch.tensor([0, 1, 2]))
    with pytest.raises(RuntimeError, match=r"needs a target of shape \(2, 3\)"):
        F.cross_entropy(torch.randn(2, 5, 3), torch.zeros(2, 4, dtype=torch.long))


@pytest.mark.parametrize("dtype,hint", [(torch.float32, "probability"), (torch.int32, r"target.long\(\)")])
def test_cross_entropy_wrong_target_dtype(dtype, hint):
    with pytest.raises(RuntimeError, match=rf"class indices as torch.int64, got {dtype}.*{hint}"):
        F.cross_entropy(torch.randn(4, 5), torch.zeros(4, dtype=dtype))


def test_cross_entropy_probability_target_of_another_shape_is_read_as_class_indices():
    """As in torch, only a target of the input's shape holds probabilities."""
    with pytest.raises(RuntimeError, match=r"got torch.float32; probability \(soft\) targets must have the input's shape \(4, 5\)"):
        F.cross_entropy(torch.randn(4, 5), torch.rand(4, 6))


def test_cross_entropy_integer_target_of_the_inputs_shape():
    with pytest.raises(RuntimeError, match=r"input's shape \(4, 5\) holds class probabilities and must be floating "
                                           r"point, got torch.int64; for class indices give a target of shape \(4,\)"):
        F.cross_entropy(torch.randn(4, 5), torch.zeros(4, 5, dtype=torch.long))
    with pytest.raises(RuntimeError, match="Expected floating point type for target with class probabilities"):
        torch.nn.functional.cross_entropy(torch.randn(4, 5), torch.zeros(4, 5, dtype=torch.long))


@pytest.mark.parametrize("ignore_index", [0, 3])
def test_cross_entropy_ignore_index_with_probability_targets_is_refused_like_torch(ignore_index):
    x, q = torch.randn(4, 5), torch.rand(4, 5)
    with pytest.raises(RuntimeError, match=rf"ignore_index={ignore_index} is not supported for probability targets"):
        F.cross_entropy(x, q, ignore_index=ignore_index)
    with pytest.raises(RuntimeError, match="ignore_index is not supported for floating point target"):
        torch.nn.functional.cross_entropy(x, q, ignore_index=ignore_index)
    assert torch.allclose(F.cross_entropy(x, q, ignore_index=-1), torch.nn.functional.cross_entropy(x, q, ignore_index=-1))


def test_cross_entropy_probability_targets_accept_weights_that_require_grad():
    """torch differentiates the soft-target loss in the weights (not the class-index one)."""
    x, q, w = torch.randn(4, 5), torch.rand(4, 5), torch.rand(5, requires_grad=True)
    (mine,) = torch.autograd.grad(F.cross_entropy(x, q, w, label_smoothing=0.2), w)
    (ref,) = torch.autograd.grad(torch.nn.functional.cross_entropy(x, q, w, label_smoothing=0.2), w)
    assert torch.allclose(mine, ref)


def test_cross_entropy_bad_weight_and_smoothing():
    with pytest.raises(RuntimeError, match=r"weight must have shape \(5,\)"):
        F.cross_entropy(torch.randn(4, 5), torch.zeros(4, dtype=torch.long), weight=torch.ones(4))
    with pytest.raises(RuntimeError, match="weight requires grad"):
        F.cross_entropy(torch.randn(4, 5), torch.zeros(4, dtype=torch.long), weight=torch.ones(5, requires_grad=True))
    with pytest.raises(RuntimeError, match=r"label_smoothing must be in \[0, 1\], got 1.5"):
        F.cross_entropy(torch.randn(4, 5), torch.zeros(4, dtype=torch.long), label_smoothing=1.5)


@pytest.mark.parametrize("name", ["cross_entropy", "mse_loss", "binary_cross_entropy", "binary_cross_entropy_with_logits"])
def test_unknown_reduction(name):
    x = torch.rand(4, 5)
    y = torch.zeros(4, dtype=torch.long) if name == "cross_entropy" else torch.rand(4, 5)
    with pytest.raises(ValueError, match=r"reduction='avg' is not a valid value.*'none', 'mean' or 'sum'"):
        getattr(F, name)(x, y, reduction="avg")


@pytest.mark.parametrize("p", [-0.1, 1.5])
def test_dropout_probability_outside_unit_interval(p):
    with pytest.raises(ValueError, match=rf"between 0 and 1, but got p={p}"):
        F.dropout(torch.randn(3), p)


def test_hardtanh_bounds_in_the_wrong_order():
    with pytest.raises(ValueError, match="min_val=2 cannot be greater than max_val=1"):
        F.hardtanh(torch.randn(3), 2, 1)


def test_binary_cross_entropy_input_outside_probabilities():
    with pytest.raises(RuntimeError, match=r"input value 1.5 at index \(1,\) is not a probability"):
        F.binary_cross_entropy(torch.tensor([0.5, 1.5]), torch.tensor([1.0, 0.0]))


def test_binary_cross_entropy_shape_mismatch():
    with pytest.raises(ValueError, match=r"target of shape \(2,\) differs from input of shape \(2, 3\)"):
        F.binary_cross_entropy_with_logits(torch.randn(2, 3), torch.rand(2))


def test_softmax_dim_out_of_range():
    with pytest.raises(IndexError, match=r"dim=2 is out of range for an input of shape \(3, 4\)"):
        F.softmax(torch.randn(3, 4), dim=2)


def test_unknown_impl():
    with pytest.raises(ValueError, match="impl='fast' is not an implementation"):
        F.relu(torch.randn(3), impl="fast")


def test_legacy_reduction_arguments_map_like_torch():
    x, y = torch.randn(4, 5), torch.randn(4, 5)
    with pytest.warns(UserWarning, match="reduction='sum'"):
        assert torch.allclose(F.mse_loss(x, y, size_average=False), F.mse_loss(x, y, reduction="sum"))
    with pytest.warns(UserWarning, match="reduction='none'"):
        assert F.mse_loss(x, y, reduce=False).shape == (4, 5)

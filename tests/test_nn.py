"""nnbasics.nn and nnbasics.functional are drop-in twins of torch.nn and torch.nn.functional."""
import inspect

import pytest
import torch
import torch.nn.functional as TF
from torch import nn

import nnbasics.functional as F
import nnbasics.nn as nnb
from nnbasics.nn import INITS
from nnbasics.testing import compare

MODULES = [
    ("Linear", (5, 3), {}),
    ("Linear", (5, 3), {"bias": False}),
    ("Sigmoid", (), {}),
    ("ReLU", (), {"inplace": True}),
    ("Tanh", (), {}),
    ("LeakyReLU", (0.2,), {}),
    ("Hardtanh", (-2.0, 3.0), {}),
    ("Softmax", (), {"dim": 1}),
    ("LogSoftmax", (), {"dim": 1}),
    ("Dropout", (0.2,), {}),
    ("CrossEntropyLoss", (), {"weight": torch.ones(3), "label_smoothing": 0.1}),
    ("MSELoss", (), {"reduction": "sum"}),
    ("BCELoss", (), {"weight": torch.ones(3)}),
    ("BCEWithLogitsLoss", (), {"pos_weight": torch.ones(3)}),
]


@pytest.mark.parametrize("name,args,kwargs", MODULES, ids=[m[0] for m in MODULES])
def test_module_mirrors_torch(name, args, kwargs):
    torch.manual_seed(0)
    mine = getattr(nnb, name)(*args, **kwargs)
    torch.manual_seed(0)
    ref = getattr(nn, name)(*args, **kwargs)
    assert isinstance(mine, getattr(nn, name))
    assert repr(mine) == repr(ref)
    assert list(mine.state_dict()) == list(ref.state_dict())
    for (k, a), (_, b) in zip(mine.state_dict().items(), ref.state_dict().items()):
        assert torch.equal(a, b), k  # same initialisation from the same seed
    ref_sig = list(inspect.signature(getattr(nn, name).__init__).parameters)
    if ref_sig == ["self", "args", "kwargs"]:  # nn.Sigmoid and nn.Tanh take no arguments
        ref_sig = ["self"]
    assert list(inspect.signature(type(mine).__init__).parameters) == ref_sig + ["impl"]


def test_module_forward_matches_torch():
    torch.manual_seed(0)
    x = torch.randn(4, 5)
    lin, ref = nnb.Linear(5, 3), nn.Linear(5, 3)
    ref.load_state_dict(lin.state_dict())
    assert compare("Linear", lin(x), ref(x)).close
    logits, target = torch.randn(4, 3), torch.tensor([0, 2, 1, 2])
    assert compare("CE", nnb.CrossEntropyLoss(label_smoothing=0.1)(logits, target),
                   nn.CrossEntropyLoss(label_smoothing=0.1)(logits, target)).close
    y = torch.rand(4, 3)
    assert compare("BCEWL", nnb.BCEWithLogitsLoss(pos_weight=torch.full((3,), 2.0))(logits, y),
                   nn.BCEWithLogitsLoss(pos_weight=torch.full((3,), 2.0))(logits, y)).close
    drop = nnb.Dropout(0.5).eval()
    assert drop(x) is x


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh", "leaky_relu", "hardtanh"])
@pytest.mark.parametrize("init", INITS)
def test_mlp_twins_start_equal_and_compute_the_same(activation, init):
    torch.manual_seed(3)
    mine = nnb.MLP([12, 16, 8, 4], activation=activation, dropout=0.1, init=init)
    torch.manual_seed(3)
    ref = nnb.MLP([12, 16, 8, 4], activation=activation, dropout=0.1, init=init, impl="builtin")
    assert all(type(m).__module__.startswith("torch.nn") for m in ref)
    for (k, a), (k2, b) in zip(mine.state_dict().items(), ref.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    x, t = torch.randn(6, 12, dtype=torch.float32), torch.randint(0, 4, (6,))
    mine.eval(), ref.eval()
    lm, lr = F.cross_entropy(mine(x), t), TF.cross_entropy(ref(x), t)
    assert compare("loss", lm, lr).close
    lm.backward(), lr.backward()
    for a, b in zip(mine.parameters(), ref.parameters()):
        assert compare("grad", a.grad, b.grad).close


def test_mlp_state_dict_loads_into_plain_torch_sequential():
    mlp = nnb.MLP([784, 32, 10], dropout=0.2)
    plain = nn.Sequential(nn.Linear(784, 32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 10))
    plain.load_state_dict(mlp.state_dict())
    x = torch.randn(3, 784)
    assert torch.allclose(plain.eval()(x), mlp.eval()(x))


def test_mlp_rejects_bad_arguments():
    with pytest.raises(ValueError, match="activation='gelu' is unknown"):
        nnb.MLP([4, 2], activation="gelu")
    with pytest.raises(ValueError, match="impl='fast' is not an implementation"):
        nnb.MLP([4, 2], impl="fast")
    with pytest.raises(ValueError, match="sizes=\\[4\\] must list"):
        nnb.MLP([4])


def test_functional_signatures_mirror_torch():
    for name in F.__all__:
        mine = inspect.signature(getattr(F, name)).parameters
        if name == "linear":  # a builtin without a Python signature; its documented one:
            ref = ["input", "weight", "bias"]
        else:
            ref = list(inspect.signature(getattr(TF, name)).parameters)
        assert list(mine)[: len(ref)] == ref, name
        assert list(mine)[len(ref):] == ["impl"], name
        for p in ref:
            if name != "linear":
                ref_default = inspect.signature(getattr(TF, name)).parameters[p].default
                assert mine[p].default == ref_default, (name, p)


@pytest.mark.parametrize("shape", [(4, 5), (2, 3, 5), (5,)], ids=["2-D", "3-D", "unbatched"])
def test_linear_output_can_be_changed_in_place_as_torchs_can(shape):
    """torch.nn.ReLU(inplace=True) after a Linear is common: the output of a linear, of any rank,
    must not be a view made inside the Function (autograd forbids changing those in place)."""
    x = torch.randn(shape)
    for impl in F.IMPLS:
        torch.manual_seed(0)
        mine = nn.Sequential(nnb.Linear(5, 3, impl=impl), nn.ReLU(inplace=True))
        torch.manual_seed(0)
        ref = nn.Sequential(nn.Linear(5, 3), nn.ReLU(inplace=True))
        mine(x).sum().backward()
        ref(x).sum().backward()
        assert compare("weight grad", mine[0].weight.grad, ref[0].weight.grad).close


@pytest.mark.parametrize("impl", ["custom", "fused"])
def test_mlp_forward_calls_its_modules_so_their_hooks_fire(impl):
    """nn.MLP runs as a Sequential: every layer is a module call, the activation+dropout pair
    (nn.ActivationDropout) included, in training; in evaluation the pair calls its activation."""
    mlp = nnb.MLP([6, 8, 8, 3], dropout=0.2, impl=impl)
    seen = []
    for name, module in mlp.named_modules():
        module.register_forward_hook(lambda m, i, o, name=name: seen.append(name))
    x = torch.randn(4, 6)
    mlp(x)
    assert seen == ["0", "1", "3", "4", "6", ""]
    seen.clear()
    mlp.eval()(x)
    assert seen == ["0", "1.activation", "1", "3", "4.activation", "4", "6", ""]
    assert list(mlp.state_dict()) == list(nnb.MLP([6, 8, 8, 3], dropout=0.2, impl="builtin").state_dict())

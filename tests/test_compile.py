"""torch.compile(fullgraph=True) traces straight through the hand-written Functions."""
import torch

import nnbasics.functional as F
from nnbasics.nn import MLP


def test_compiled_mlp_has_no_graph_break_and_matches_eager(device):
    torch.manual_seed(0)
    model = MLP([20, 32, 16, 5], activation="relu", dropout=0.0).to(device)
    x = torch.randn(12, 20, device=device)
    t = torch.randint(0, 5, (12,), device=device)

    def forward(x, t):
        return F.cross_entropy(F.sigmoid(model(x)) * 4, t, label_smoothing=0.1)

    def loss_and_grads(fn):
        loss = fn(x, t)  # the backward graph is compiled too (AOTAutograd), and runs here
        return loss, torch.autograd.grad(loss, list(model.parameters()))

    torch._dynamo.reset()
    explanation = torch._dynamo.explain(forward)(x, t)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1

    eager_loss, eager_grads = loss_and_grads(forward)
    loss, grads = loss_and_grads(torch.compile(forward, fullgraph=True))
    torch.testing.assert_close(loss, eager_loss, rtol=1e-5, atol=1e-6)
    for g, e in zip(grads, eager_grads):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-6)

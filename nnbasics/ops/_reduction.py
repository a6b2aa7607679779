"""Reductions shared by the losses, and their derivatives.

A loss first computes one value per element, ``l``, then reduces it:

    none: L = l            dL/dl = 1
    sum:  L = Σ l          dL/dl = 1         (broadcast to l's shape)
    mean: L = Σ l / n      dL/dl = 1 / n

where n is the number of elements, or, for weighted losses, the total weight
(passed in as ``total``).

``reduce`` is the forward, ``unreduce`` the backward (it turns the upstream
gradient of L into the gradient of every l), and since reducing is linear the
forward-mode derivative of L is ``reduce`` applied to the tangent of l.
"""
import torch

REDUCTIONS = ("none", "mean", "sum")


def reduce(loss: torch.Tensor, reduction: str, total=None) -> torch.Tensor:
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    return loss.mean() if total is None else loss.sum() / total


def unreduce(grad: torch.Tensor, reduction: str, like: torch.Tensor, total=None) -> torch.Tensor:
    """dL/dl for every element of ``like`` (the unreduced loss), times the upstream ``grad``."""
    if reduction == "none":
        return grad
    if reduction == "mean":
        grad = grad / (like.numel() if total is None else total)
    return grad.expand(like.shape)

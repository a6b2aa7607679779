"""Does the Function keep and change only what autograd knows about? No tensor hidden on ``ctx``; outputs
and saved tensors freed as soon as the user drops them; no input, ``grad_output`` or saved tensor
modified behind autograd's back."""
import gc
import weakref

import torch

from ..target import (
    Fail,
    Skip,
    custom_nodes,
    describe,
    differentiable,
    function_name,
    grads,
    outputs,
    probe,
    random_like,
    same_values,
    verdict,
)


def _tensors_in(value, depth=0):
    if isinstance(value, torch.Tensor):
        yield value
    elif depth < 3 and isinstance(value, (list, tuple, set)):
        for v in value:
            yield from _tensors_in(v, depth + 1)
    elif depth < 3 and isinstance(value, dict):
        for v in value.values():
            yield from _tensors_in(v, depth + 1)


def _storage(x):
    try:
        return x.untyped_storage().data_ptr()
    except (RuntimeError, NotImplementedError):  # a tensor without storage (meta, a subclass): no match
        return None


def _varies(t, nodes, node, attr, x) -> bool:
    """Whether the tensor kept as ``ctx.<attr>`` is computed from the inputs: forward again on inputs times 1.5 (reseeded
    like every call), and the same attribute of the same node compared. A mask drawn at random or a constant does
    not vary, and double backward is right to take it for a constant; a forward that raises there counts as varying."""
    try:
        again = custom_nodes(differentiable(outputs(t.run(t.make(scale=1.5)))))
        other = vars(again[nodes.index(node)]).get(attr)
        y = next(_tensors_in(other), None)
    except Exception:  # noqa: BLE001 - no second look: as the rule says, an intermediate
        return True
    return y is None or not same_values(x.detach(), y.detach())


def ctx_tensors(t):
    a, out = t.first_call()
    outs = differentiable(outputs(out))
    nodes = custom_nodes(outs)
    if not nodes:
        raise Skip("no autograd.Function in the graph of the outputs: no ctx to look at")
    ins = {_storage(x) for x in a.args if isinstance(x, torch.Tensor)} - {None}
    outs_ = {_storage(x) for x in outputs(out)} - {None}
    problems, cycle = [], False
    for node in nodes:
        for attr, value in vars(node).items():
            for x in _tensors_in(value):
                kept = f"{function_name(node)} keeps ctx.{attr} (a tensor of shape {tuple(x.shape)})"
                where = _storage(x)
                if where in outs_:
                    cycle = True
                    problems.append(("fail", (f"{kept}, an output, as an attribute: a reference cycle (output -> its "
                                      "grad_fn -> ctx -> output), so the output and everything saved live until the "
                                      "cyclic garbage collector runs; save it with ctx.save_for_backward, keep only "
                                      "non-tensors on ctx")))
                elif where in ins:
                    problems.append(("warn", (f"{kept}, an input, as an attribute: right, but saved-tensor hooks "
                                      "(checkpointing, offloading) never see it, and an in-place change of it before "
                                      "backward goes unnoticed; save it with ctx.save_for_backward (ctx.save_for_forward "
                                      "for jvp)")))
                elif (x.is_floating_point() or x.is_complex() or x.requires_grad) and _varies(t, nodes, node, attr, x):
                    problems.append(("fail", (f"{kept}, an intermediate of forward, as an attribute: autograd does not "
                                      "track it, so double backward takes it for a constant (wrong second derivatives), "
                                      "and saved-tensor hooks never see it; recompute it in backward from the saved "
                                      "inputs, or return it as an extra output (ctx.mark_non_differentiable) and "
                                      "ctx.save_for_backward it")))
                else:
                    problems.append(("warn", (f"{kept}, neither an input nor an output nor computed from them: no "
                                      "cycle and no wrong result, but saved-tensor hooks (offloading, checkpointing) do "
                                      "not see it, so its memory stays where it is until backward; save it with "
                                      "ctx.save_for_backward if that matters")))
                break
    try:
        verdict(problems)
    except Fail as exc:
        # Only an output kept on ctx makes the leak; only an intermediate the wrong second derivatives.
        exc.spares = ("gradgradcheck",) if cycle else ("leak",)
        raise
    return "no tensor kept as an attribute of ctx"


def _leftovers(t, backward: bool):
    """What is still alive once the user dropped the outputs: (names alive at once, names alive after gc.collect())."""
    a = t.make()
    outs = outputs(t.run(a))
    refs = [(f"output {i}", weakref.ref(o)) for i, o in enumerate(outs) if not any(o is x for x in a.args)]
    refs += [(f"{function_name(n)}'s ctx (and what it saved)", weakref.ref(n)) for n in custom_nodes(outs)]
    if backward:
        diff = differentiable(outs)
        grads(diff, a.tensors, random_like(diff))  # the gradients are dropped at once, as the outputs next
        del diff
    del outs
    alive = [name for name, r in refs if r() is not None]
    if not alive:
        return [], []
    gc.collect()
    return alive, [name for name, r in refs if r() is not None]


def leak(t):
    # No gc.collect() first: garbage made before does not keep these new objects alive, and a full collection of a
    # process that has loaded torch and Dynamo costs a tenth of a second or more.
    enabled = gc.isenabled()
    gc.disable()  # so that only reference counting frees anything until we ask
    try:
        for backward in (False, True):
            alive, still = _leftovers(t, backward)
            when = "after a backward pass" if backward else "after forward"
            if still:
                raise Fail(f"{', '.join(still)} stay(s) alive {when} once the caller dropped the outputs, even after "
                           "gc.collect(): something keeps a reference (a global cache, a list, a class attribute); "
                           "keep no outputs or ctx beyond the call")
            if alive:
                raise Fail(f"{', '.join(alive)} {when} are freed only by the cyclic garbage collector, not when the "
                           "caller drops the outputs: a reference cycle (typically ctx.y = y for an output y, or a "
                           "closure on ctx); save outputs with ctx.save_for_backward(y) instead")
    finally:
        if enabled:
            gc.enable()
    return "outputs and ctx freed by reference counting as soon as the outputs are dropped (after forward and after backward)"


def _snapshot(tensors):
    return [(x, x.detach().clone(), x._version) for x in tensors if x is not None]


def _changed(snapshot):
    return [i for i, (x, before, version) in enumerate(snapshot)
            if x._version != version or not same_values(x.detach(), before)]


def mutation(t):
    problems = []
    a = t.make(nonleaf=True)
    given = [x for x in list(a.args) + list(a.kwargs.values()) if isinstance(x, torch.Tensor)]
    snap = _snapshot(given)
    outs = outputs(t.run(a))
    for i in _changed(snap):
        if not any(o is given[i] for o in outs):
            problems.append(f"forward modified input {i} in place without ctx.mark_dirty: the caller's tensor changed "
                            "behind autograd's back, so anything else computed from it (and its gradient) may be "
                            "wrong; work on a copy, or ctx.mark_dirty(x) and return x")

    def visit(node, grad_outputs):
        name = function_name(node)
        upstream = [g.clone() if isinstance(g, torch.Tensor) else g for g in grad_outputs]
        ups = _snapshot([g for g in upstream if isinstance(g, torch.Tensor)])
        try:
            saved = _snapshot(node.saved_tensors)
            node.apply(*upstream)
        except Exception as exc:  # noqa: BLE001 - the Function's own error is the finding
            problems.append(f"{name}.backward raised {describe(exc)}")
            return
        for i in _changed(ups):
            problems.append(f"{name}.backward modified grad_output {i} in place: autograd may hand the same buffer to "
                            "other nodes, whose gradients then change; compute a new tensor (grad * d, not grad.mul_(d))")
        for i in _changed(saved):
            problems.append(f"{name}.backward modified saved tensor #{i} in place: it is the caller's input or "
                            "output (or needed by a second backward); compute out of place")

    try:
        probe(t, t.make(nonleaf=True), visit)
    except Skip:
        pass
    if problems:
        forward = any(p.startswith("forward") for p in problems)
        # A write in backward leaves the first derivatives and the reference's comparison meaningful.
        raise Fail("; ".join(dict.fromkeys(problems)), spares=() if forward else ("gradcheck", "reference"))
    return "forward leaves its inputs, backward its grad_output and saved tensors untouched"

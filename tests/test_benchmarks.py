"""The benchmarks still run and report what they claim: benchmarks.ops, benchmarks.train and
benchmarks.memory, on the CPU and on CUDA where it is available. No timing is asserted:
timings are the benchmark's output, not a property of the code."""
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks import common, derivative_kernels, memory, ops, saved, saved_output, step_parts
from benchmarks import train as bench_train
from nnbasics import nn as nnb
from nnbasics import ops as nnops
from nnbasics import train as nntrain
from nnbasics.testing import OPS

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def quick(device, tmp_path_factory):
    """One ``--quick`` run of the readable reference, with every output written, per device."""
    out = tmp_path_factory.mktemp("bench")
    paths = {"json": out / "ops.json", "markdown": out / "ops.md", "plot": out / "ops.png"}
    argv = ["--quick", "--device", device, "--impl", "custom"]
    for flag, path in paths.items():
        argv += [f"--{flag}", str(path)]
    assert ops.main(argv) == 0
    return paths


def test_json_has_header_and_every_op_in_every_mode(quick):
    report = json.loads(quick["json"].read_text())
    for key in ("device_name", "torch", "threads", "date", "command", "git_commit", "dtype"):
        assert key in report["header"]
    assert report["header"]["command"].startswith("python -m benchmarks.ops --quick")
    seen = {(row["op"], row["mode"]) for row in report["rows"]}
    assert seen == {(op.name, mode) for op in OPS for mode in ops.MODES}


def test_ratios_and_times_are_positive_and_finite(quick):
    for row in json.loads(quick["json"].read_text())["rows"]:
        for key in ("hand_ms", "builtin_ms", "time_ratio", "saved_ratio"):
            assert row[key] > 0 and math.isfinite(row[key]), (row["op"], row["mode"], key, row[key])


def test_relu_saved_bytes_match_what_each_relu_saves(quick):
    """Counted independently: the hand-written relu, like torch.relu, saves its float32 output
    (4 bytes per element; the next layer keeps the same tensor)."""
    rows = [r for r in json.loads(quick["json"].read_text())["rows"] if r["op"] == "relu"]
    assert rows
    for row in rows:
        assert row["hand_saved_bytes"] == row["hand_saved_unique_bytes"] == 4 * row["numel"]
        assert row["builtin_saved_bytes"] == row["builtin_saved_unique_bytes"] == 4 * row["numel"]
        assert row["saved_ratio"] == pytest.approx(1.0)


def test_markdown_and_plot_are_written(quick):
    table = quick["markdown"].read_text()
    assert "| op | size | mode | impl |" in table
    for op in OPS:
        assert f"| {op.name} |" in table
    assert quick["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_saved_bytes_counts_every_save_but_each_storage_once():
    x = torch.randn(10, 3, requires_grad=True)
    saved = common.saved_tensor_bytes(lambda: x * x, inputs=[x])  # mul saves both factors: x twice
    assert (saved.total, saved.unique, saved.new) == (2 * 120, 120, 0)
    saved = common.saved_tensor_bytes(lambda: torch.exp(x), inputs=[x])  # exp saves its (new) output
    assert (saved.total, saved.unique, saved.new) == (120, 120, 120)


def test_throughput_is_reported_only_for_large_sizes(tmp_path):
    path = tmp_path / "relu.json"
    assert ops.main(["--device", "cpu", "--impl", "custom", "--ops", "relu", "--modes", "fwd+bwd", "--sizes",
                     f"1000,{ops.LARGE}", "--repeats", "1", "--min-run-time", "0.001", "--json", str(path)]) == 0
    small, large = json.loads(path.read_text())["rows"]
    assert small["hand_throughput"] is None and small["builtin_throughput"] is None
    assert large["unit"] == "GB/s" and large["hand_throughput"] > 0 and large["builtin_throughput"] > 0


def test_control_times_the_builtin_against_itself(tmp_path):
    """--control: one more row per (op, size, mode), the built-in op as the hand-written one, with
    the built-in's saved bytes; the markdown says what the rows are."""
    path, table, png = tmp_path / "control.json", tmp_path / "control.md", tmp_path / "control.png"
    assert ops.main(["--device", "cpu", "--impl", "custom", "--ops", "relu,mse_loss", "--modes", "forward,fwd+bwd",
                     "--sizes", "1000", "--repeats", "2", "--min-run-time", "0.001", "--control",
                     "--json", str(path), "--markdown", str(table), "--plot", str(png)]) == 0
    rows = json.loads(path.read_text())["rows"]
    assert [(r["op"], r["mode"], r["impl"]) for r in rows] == [
        (op, mode, impl) for op in ("relu", "mse_loss") for mode in ("forward", "fwd+bwd") for impl in ("custom", "control")]
    for row in rows:
        if row["impl"] == "control":
            assert row["hand_saved_unique_bytes"] == row["builtin_saved_unique_bytes"]
            assert row["saved_ratio"] == 1.0 and 0 < row["time_ratio"] and math.isfinite(row["time_ratio"])
    assert "the built-in op timed against itself" in table.read_text()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_work_counts_minimal_traffic_and_matmul_flops():
    relu = ops.OPS_BY_NAME["relu"].make(1000, "cpu", torch.float32, True)
    assert ops.work("relu", relu, "forward") == (2 * 1000 * 4, "B")  # read x, write y
    assert ops.work("relu", relu, "fwd+bwd") == (5 * 1000 * 4, "B")  # + read dy and saved, write dx
    lin = ops.linear_make(8, 3, 5, "cpu", torch.float32, True)
    assert ops.work("linear", lin, "fwd+bwd") == (6 * 8 * 3 * 5, "FLOP")


def test_fused_impl_runs(device, tmp_path):
    path = tmp_path / "fused.json"
    assert ops.main(["--quick", "--device", device, "--impl", "fused", "--ops", "relu,cross_entropy",
                     "--json", str(path)]) == 0
    rows = json.loads(path.read_text())["rows"]
    assert {r["impl"] for r in rows} == {"fused"}


@pytest.mark.skipif(common.cuda_usable(), reason="CUDA is available here")
def test_cuda_request_without_cuda_exits_2(capsys):
    assert ops.main(["--device", "cuda", "--quick"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_runs_as_a_script():
    done = subprocess.run([sys.executable, "benchmarks/ops.py", "--help"], cwd=REPO_ROOT, capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0 and "--markdown" in done.stdout


# --------------------------------------------------------------------------- benchmarks.saved

def test_saved_bytes_in_chains_never_exceed_the_builtins(device, tmp_path):
    """Bytes are deterministic, so the ratios may be asserted: every chain, every activation, both impls."""
    out = tmp_path / "saved.json"
    assert saved.main(["--quick", "--device", device, "--json", str(out), "--markdown", str(tmp_path / "saved.md")]) == 0
    report = json.loads(out.read_text())
    assert report["header"]["command"].startswith("python -m benchmarks.saved --quick")
    rows = report["rows"]
    assert {(r["activation"], r["chain"], r["impl"]) for r in rows} == {
        (a, c, i) for a in saved.ACTIVATIONS for c in saved.CHAINS for i in saved.IMPLS}
    for r in rows:
        assert 0 < r["hand_bytes"] <= r["builtin_bytes"], r
        assert r["hand_apart_bytes"] == r["builtin_apart_bytes"], r
    b, (_, h, _, _) = saved.QUICK_BATCH, saved.QUICK_SIZES
    by = {(r["activation"], r["chain"], r["impl"]): r for r in rows}
    # linear→act→linear: relu's saved output is the next linear's saved input, one storage
    assert by["relu", "linear→act→linear", "custom"]["hand_bytes"] == 4 * b * h
    # linear→act→dropout→linear: relu's output, dropout's bool mask, dropout's output
    assert by["relu", "linear→act→dropout→linear", "custom"]["hand_bytes"] == 4 * b * h + b * h + 4 * b * h


# --------------------------------------------------------------------------- benchmarks.derivative_kernels

@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_derivative_kernels_times_each_backward_and_hardtanhs_c_loop(dtype, capsys):
    """Every row is printed once, after its ways agree with ATen's kernel; hardtanh's has the C loop's column.
    The times only run."""
    derivative_kernels.main(["--rows", "64", "--cols", "96", "--rounds", "1", "--dtype", dtype])
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[2:-1]}
    assert set(rows) == {"sigmoid", "tanh", "relu", "leaky_relu", "softmax", "log_softmax", "hardtanh"}
    assert all(row[4] == "-" and len(row) == 6 for name, row in rows.items() if name != "hardtanh")
    assert len(rows["hardtanh"]) == 7 and float(rows["hardtanh"][6]) > 0  # c loop / aten


# --------------------------------------------------------------------------- benchmarks.saved_output

def test_saved_output_compares_what_its_variants_save():
    """The fast path's leaky_relu saves what the built-in saves (x); the variant saving y, as the textbook does,
    keeps less in a network (the next Linear holds y anyway). Bytes are deterministic; the times only run."""
    times, mib = saved_output.mlp_steps(batch=4, rounds=1)
    assert set(times) == set(mib) == {"builtin", "fused", "saving y"} and all(t > 0 for t in times.values())
    assert mib["fused"] == mib["builtin"] > mib["saving y"] > 0
    textbook = {"leaky_relu": lambda x: nnops.LeakyReLU.apply(x, 0.01), "hardtanh": lambda x: nnops.Hardtanh.apply(x, -1.0, 1.0)}
    for name, variants in saved_output.ACTIVATIONS.items():
        x = torch.randn(6, 5, requires_grad=True)
        x.data[0, 0] = float("nan")  # where the built-in hardtanh's rule depends on the position: the textbook's holds
        want = torch.autograd.grad(textbook[name](x), x, torch.ones(6, 5))[0]
        for k in set(variants) - {"builtin"}:
            torch.testing.assert_close(torch.autograd.grad(variants[k](x), x, torch.ones(6, 5))[0], want,
                                       msg=f"{name} {k}")


# --------------------------------------------------------------------------- benchmarks.train

def test_matmul_floor_does_the_steps_matrix_products():
    """The floor runs 3 products per layer but 2 for the first (its input needs no gradient), in bfloat16
    under amp: counted with the profiler, so a floor that skipped or added products would fail."""
    for amp, dtype in ((False, torch.float32), (True, torch.bfloat16)):
        run = bench_train.matmul_floor([784, 32, 16, 10], 8, torch.device("cpu"), amp)
        with torch.profiler.profile(record_shapes=True) as prof:
            run()
        mms = [e for e in prof.events() if e.name == "aten::mm"]
        assert len(mms) == 3 + 3 + 2 and all(e.input_dtypes[:2] == [{torch.float32: "float", torch.bfloat16: "c10::BFloat16"}[dtype]] * 2
                                             for e in mms), [e.input_dtypes for e in mms]
        assert sorted(tuple(map(tuple, e.input_shapes)) for e in mms) == sorted([
            ((8, 784), (784, 32)), ((32, 8), (8, 784)),
            ((8, 32), (32, 16)), ((16, 8), (8, 32)), ((8, 16), (16, 32)),
            ((8, 16), (16, 10)), ((10, 8), (8, 16)), ((8, 10), (10, 16))])

def test_quick_training_benchmark(device, tmp_path, monkeypatch):
    out_json, out_md = tmp_path / "train.json", tmp_path / "train.md"
    argv = ["--quick", "--no-compile", "--device", device, "--json", str(out_json), "--markdown", str(out_md)]
    groups, time_alternately = [], bench_train.common.time_alternately
    monkeypatch.setattr(bench_train.common, "time_alternately", lambda fns, *a, **k: groups.append(list(fns)) or time_alternately(fns, *a, **k))
    assert bench_train.main(argv) == 0
    result = json.loads(out_json.read_text())
    assert {r["variant"] for r in result["steps"]} == {"builtin", "builtin-tuned", "custom", "fused",
                                                       "builtin-bf16", "builtin-tuned-bf16", "custom-bf16", "fused-bf16"}
    # one implementation at a time: each step (and floor) in rounds of its own with its precision's built-in
    timed = [name for group in groups for name in group[1:]]
    assert all(len(g) == 2 and g[0] == ("builtin-bf16" if g[1].endswith("-bf16") else "builtin") for g in groups), groups
    batch_sizes = {r["batch_size"] for r in result["steps"]}
    each = {r["variant"] for r in result["steps"]} - {"builtin", "builtin-bf16"} | {"floor", "params", "floor-bf16", "params-bf16"}
    assert sorted(timed) == sorted(list(each) * len(batch_sizes))
    for r in result["steps"]:
        assert r["step_ms"] > 0 and math.isfinite(r["ratio"])
        if r["variant"] in ("builtin", "builtin-bf16"):
            assert r["ratio"] == 1.0
        assert r["floor_ms"] > 0 and r["vs_floor"] == pytest.approx(r["step_ms"] / r["floor_ms"])
    assert "step / floor" in out_md.read_text()
    saved = {r["impl"]: r for r in result["saved"]}
    # 784-64-10 with dropout 0.2 at batch 128, parameters and batch excluded. The built-in saves
    # relu's float32 output, dropout's float32 mask, and more; the hand-written MLP one 1-byte mask.
    b, h = 128, 64
    assert saved["custom"]["total_bytes"] == saved["fused"]["total_bytes"]
    assert saved["custom"]["total_bytes"] < saved["builtin"]["total_bytes"]
    # relu+dropout's one mask, dropout's output (saved by the next linear), the logits (by cross_entropy)
    assert saved["custom"]["total_bytes"] == b * h + 4 * b * h + 4 * b * 10
    assert [r["epochs"] for r in result["time_to_accuracy"]] == [1] * 8
    assert {r["precision"] for r in result["time_to_accuracy"]} == {"float32", "bfloat16"}
    assert [t["target"] for t in result["time_to_accuracy"][0]["targets"]] == [0.98, 0.985]
    assert result["environment"]["command"].startswith("python -m benchmarks.train")
    assert "| variant |" in out_md.read_text()


# --------------------------------------------------------------------------- benchmarks.memory

def test_memory_benchmark_ranks_the_cross_entropy_variants(device, tmp_path):
    """At 2048 x 32768 (256 MiB per logits tensor, four of fused_'s 64 MiB chunks) the in-place variant
    holds the fewest such tensors."""
    out = tmp_path / "memory.json"
    argv = ["--rows", "2048", "--classes", "32768", "--device", device, "--json", str(out),
            "--markdown", str(tmp_path / "memory.md")]
    assert memory.main(argv) == 0
    report = json.loads(out.read_text())
    assert report["meta"]["command"].startswith("python -m benchmarks.memory --rows 2048")
    peaks = {r["variant"]: r["peak_bytes"] for r in report["results"]}
    assert peaks.keys() == set(memory.VARIANTS)
    assert peaks["fused_"] < peaks["fused"] < peaks["builtin"]
    losses = [r["loss"] for r in report["results"]]
    assert max(losses) - min(losses) < 1e-4  # the same loss, whichever variant computed it


def test_memory_benchmark_reports_no_ratio_against_a_peak_of_zero(tmp_path, monkeypatch):
    """A step small enough to fit in memory the process already holds leaves the resident
    high-water mark where it was: a peak of 0 bytes gives no ratio ('-'), not a division by zero."""
    peaks, run = {"builtin": 0, "custom": 4096}, subprocess.run

    def fake_child(cmd, **kwargs):
        if "--child" not in cmd:  # git, asked for the commit
            return run(cmd, **kwargs)
        variant = cmd[cmd.index("--child") + 1]
        line = json.dumps({"variant": variant, "peak_bytes": peaks[variant], "seconds": 0.01, "loss": 1.0})
        return subprocess.CompletedProcess(cmd, 0, stdout=line + "\n", stderr="")

    monkeypatch.setattr(memory.subprocess, "run", fake_child)
    out = tmp_path / "memory.json"
    argv = ["--rows", "4", "--classes", "8", "--device", "cpu", "--variants", "builtin,custom",
            "--json", str(out), "--markdown", str(tmp_path / "memory.md")]
    assert memory.main(argv) == 0
    assert [r["ratio"] for r in json.loads(out.read_text())["results"]] == [None, None]
    assert "| builtin | 0.00 | 0.00 | - |" in (tmp_path / "memory.md").read_text()


def test_overhead_benchmark_runs_and_writes_every_variant_and_mode(tmp_path):
    """benchmarks.overhead --quick: a built-in op, an autograd.Function and a custom_op, every mode."""
    from benchmarks import overhead

    assert overhead.main(["--quick", "--json", str(tmp_path / "o.json"), "--markdown", str(tmp_path / "o.md")]) == 0
    report = json.loads((tmp_path / "o.json").read_text())
    assert report["header"]["command"].startswith("python -m benchmarks.overhead --quick")
    assert [row["mode"] for row in report["rows"]] == list(overhead.MODES)
    for row in report["rows"]:
        assert all(row[f"{name} s"] > 0 for name in overhead.VARIANTS)
    assert "custom_op − built-in" in (tmp_path / "o.md").read_text()


def test_step_parts_benchmark_times_every_variant_with_its_part_swapped(tmp_path):
    """benchmarks.step_parts --quick: every variant, at the quick batch and the tiny MLP, each part
    of the custom step swapped for the built-in's in its own variant."""
    out = tmp_path / "parts.json"
    assert step_parts.main(["--quick", "--device", "cpu", "--precisions", "float32", "--json", str(out),
                            "--markdown", str(tmp_path / "parts.md")]) == 0
    rows = json.loads(out.read_text())["rows"]
    variants = {"builtin", "custom", "custom, built-in linear", "custom, built-in activation+dropout",
                "custom, built-in cross-entropy", "floor"}
    for mlp in ("784-64-10", "784-8-8-10"):
        assert {r["variant"] for r in rows if r["mlp"] == mlp} == variants
    for r in rows:
        assert r["step_ms"] > 0 and math.isfinite(r["step_ms"])
        assert (r["part_cost_ms"] is None) == (r["variant"] in ("builtin", "custom", "floor"))
    profiles = json.loads(out.read_text())["profiles"]
    assert [(p["mlp"], p["variant"]) for p in profiles] == [("784-64-10", "custom"), ("784-64-10", "builtin")]
    for p in profiles:  # the parts add up to the total, and a step has matrix products and a random draw
        parts = [p[f"{k}_ms"] for k in (*step_parts.CATEGORIES, "other")]
        assert p["total_ms"] == pytest.approx(sum(parts)) and p["matrix products_ms"] > 0 and p["random draw_ms"] > 0
    assert "| MLP | batch |" in (tmp_path / "parts.md").read_text()


def test_step_parts_variants_swap_exactly_their_part():
    """The hybrid networks hold the built-in's modules where their part is, nnbasics' elsewhere."""
    config = nntrain.Config(hidden=[16], device="cpu", quiet=True)
    variants = step_parts._variants(config, torch.device("cpu"))
    linear_swapped = variants["custom, built-in linear"][0]
    assert all(type(m) is torch.nn.Linear for m in linear_swapped if isinstance(m, torch.nn.Linear))
    assert all(isinstance(m, nnb.ActivationDropout) for m in linear_swapped if not isinstance(m, torch.nn.Linear))
    act_swapped = variants["custom, built-in activation+dropout"][0]
    assert all(isinstance(m, nnb.Linear) for m in act_swapped if isinstance(m, torch.nn.Linear))
    assert all(type(m) in (torch.nn.ReLU, torch.nn.Dropout) for m in act_swapped if not isinstance(m, torch.nn.Linear))
    # same weights as the custom network in every variant
    custom = variants["custom"][0].state_dict()
    for name, (model, _, _) in variants.items():
        for key, value in model.state_dict().items():
            assert torch.equal(value, custom[key]), (name, key)

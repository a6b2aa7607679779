"""benchmarks.gpu, the one command prepared for a first GPU: its dry run on the CPU writes every
step's results, a step past its time limit is killed and reported while the others' results stay,
and its bad arguments stop it with a usage error. No timing is asserted."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import gpu

REPO_ROOT = Path(__file__).resolve().parent.parent
STEPS = [s.name for s in gpu.steps("cpu")]


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory, mnist):
    """``python -m benchmarks.gpu --device cpu --quick``, once (MNIST needed: the train steps read it)."""
    out = tmp_path_factory.mktemp("gpu")
    done = subprocess.run([sys.executable, "-m", "benchmarks.gpu", "--out", str(out), "--device", "cpu", "--quick"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=900, check=False)
    return done, out


def test_dry_run_succeeds_and_writes_only_its_three_files(dry_run):
    done, out = dry_run
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"{len(STEPS)} of {len(STEPS)} steps ok" in done.stdout
    assert sorted(p.name for p in out.iterdir()) == ["gpu.json", "gpu.log", "gpu.md"]


def test_dry_run_header_names_device_torch_date_commit_command(dry_run):
    head = json.loads((dry_run[1] / "gpu.json").read_text())["header"]
    for key in ("device", "device_name", "torch", "date", "git_commit", "command"):
        assert head[key], key
    assert head["device"] == "cpu"
    assert head["command"].startswith("python -m benchmarks.gpu --out")


def test_dry_run_parses_every_step(dry_run):
    report = json.loads((dry_run[1] / "gpu.json").read_text())
    steps = {s["name"]: s for s in report["steps"]}
    assert list(steps) == STEPS
    assert all(s["status"] == "ok" and s["results"] for s in steps.values())
    tests = steps["tests"]["results"]
    assert tests["failed"] == tests["errors"] == 0 and tests["passed"] + tests["skipped"] > 0
    assert steps["check-function"]["results"]["ok"] is True
    assert "agree with PyTorch" in steps["check-ops"]["results"]["lines"][-1]
    for name in ("train", "train-compile"):
        assert 0.0 <= steps[name]["results"]["test_acc"] <= 1.0
    assert steps["train-compile"]["results"]["compile_s"] is not None
    for name in ("ops-float32", "ops-bfloat16"):
        rows = steps[name]["results"]["rows"]
        assert {r["mode"] for r in rows} == {"forward", "backward", "fwd+bwd"}
        assert rows[0]["op"] == "relu" and rows[0]["hand_ms"] > 0
    assert steps["steps"]["results"]["steps"] and not steps["steps"]["results"]["time_to_accuracy"]
    assert [r["variant"] for r in steps["accuracy"]["results"]["time_to_accuracy"]] == ["custom"]
    assert {r["mode"] for r in steps["graphs"]["results"]["rows"]} == {"eager"}  # graphs need CUDA
    for name in ("memory-32k", "memory-128k"):
        assert [r["variant"] for r in steps[name]["results"]["results"]] == ["builtin", "custom"]


def test_dry_run_markdown_has_a_section_per_step(dry_run):
    text = (dry_run[1] / "gpu.md").read_text()
    for name in STEPS:
        assert f"## {name}: ok" in text


def test_a_step_past_its_limit_is_killed_and_reported(tmp_path):
    step = gpu.Step("sleep", 1, [], [])
    with open(tmp_path / "log", "w") as log:
        status, rc, seconds, output = gpu.run_step(
            step, [sys.executable, "-c", "import time; print('started', flush=True); time.sleep(60)"], 2.0, None, log)
    assert status == "timed out" and rc != 0 and seconds < 30
    assert "started" in output and "started" in (tmp_path / "log").read_text()


def test_out_of_time_steps_are_not_run_but_listed(tmp_path):
    done = subprocess.run([sys.executable, "-m", "benchmarks.gpu", "--out", str(tmp_path), "--device", "cpu",
                           "--steps", "check-ops,memory-32k", "--budget", "1"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1
    steps = json.loads((tmp_path / "gpu.json").read_text())["steps"]
    assert [(s["name"], s["status"]) for s in steps] == [("check-ops", "not run (out of time)"),
                                                          ("memory-32k", "not run (out of time)")]


def test_junit_failures_are_counted_with_their_first_line(tmp_path):
    (tmp_path / "j.xml").write_text(
        '<testsuites><testsuite><testcase classname="tests.test_a" name="test_ok"/>'
        '<testcase classname="tests.test_a" name="test_bad"><failure message="AssertionError: 1 != 2&#10;more">x'
        '</failure></testcase><testcase classname="tests.test_a" name="test_skip"><skipped message="no"/></testcase>'
        '<testcase classname="tests.test_b" name="test_err"><error message="RuntimeError: boom"/></testcase>'
        '</testsuite></testsuites>')
    result = gpu.junit_results(tmp_path / "j.xml")
    assert (result["passed"], result["failed"], result["errors"], result["skipped"]) == (1, 1, 1, 1)
    assert result["failures"] == [{"test": "tests.test_a::test_bad", "message": "AssertionError: 1 != 2"},
                                  {"test": "tests.test_b::test_err", "message": "RuntimeError: boom"}]


@pytest.mark.parametrize("argv, message", [
    (["--device", "cpu"], "--out DIR is required"),
    (["--out", "x", "--device", "cpu", "--steps", "tests,nope"], "--steps: unknown ['nope']"),
])
def test_bad_arguments_are_usage_errors(argv, message):
    done = subprocess.run([sys.executable, "-m", "benchmarks.gpu", *argv], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 2 and message in done.stderr


def test_packed_data_reads_back_as_the_cache(tmp_path, monkeypatch, mnist):
    from nnbasics.train import data as nndata

    assert gpu.main(["--pack-data", str(tmp_path)]) == 0
    original = nndata.load("mnist", quiet=True)
    monkeypatch.setenv("NNBASICS_CACHE", str(tmp_path))
    packed = nndata.load("mnist", quiet=True)
    for split in ("train", "test"):
        assert all(a.equal(b) for a, b in zip(original[split], packed[split], strict=True))

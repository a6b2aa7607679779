"""Everything a first GPU should run, in one command that fits one 10-minute call of the device tool.

    python -m benchmarks.gpu --out DIR                      # on CUDA: stopped by 460 s, under 8 minutes
    python -m benchmarks.gpu --out DIR --device cpu --quick # the dry run (tests/test_gpu_command.py)
    python -m benchmarks.gpu --pack-data .mnist             # once, here: MNIST into a folder that travels

Each step is a command of its own (a fresh process with its own time budget; a step that runs
past it is stopped with all its children and the next one starts), in this order:

1. ``tests``: every CUDA-parametrised test (``pytest -m cuda``: autocast float16/bfloat16,
   ``torch.compile`` with Triton, ``torch.func``, the fused path, soft targets, layouts, the
   OpInfo samples), in parallel when pytest-xdist is installed;
   ``check-ops`` / ``check-function``: ``python -m nnbasics.check`` on the device, for the ops and
   for the worked example's Function (docs/examples/softplus.py);
2. ``train``: ``python -m nnbasics.train`` with its defaults; ``train-compile``: the same with
   ``--compile`` (accuracy, wall time, training time, compile time from the run's summary.json);
3. ``ops-float32`` / ``ops-bfloat16``: ``benchmarks.ops`` at 2^20, 2^24 and 10^8 elements
   (ratios, GB/s or TFLOP/s, share of the device's peak: ``benchmarks.common.DEVICE_PEAKS``);
4. ``steps``: ``benchmarks.train`` (samples/s of builtin, custom and fused, eager, batches of 256
   and 1024); ``accuracy``: its time to 98.0% and 98.5%; ``graphs``: ``benchmarks.graphs`` (the
   same step replayed as a CUDA graph against eager);
5. ``memory-32k`` / ``memory-128k``: ``benchmarks.memory``, peak memory of the cross-entropy
   variants at 8192 x 32768 and 8192 x 131072.

After every step ``DIR/gpu.json`` (the header: device, torch, CUDA, date, commit, command; then
each step's command, status, return code, seconds and parsed results) and ``DIR/gpu.md`` (the
same as tables) are rewritten, atomically, so a run cut off anywhere still leaves every finished
step. Each step's full output is appended to ``DIR/gpu.log``. The data comes from the folder
``--data-cache`` names (default ``.mnist`` in the repository, if it exists), read as nnbasics'
cache (``NNBASICS_CACHE``): the device machine has no network. How to run it with the device
tool (carry list, timeout) is in docs/benchmarks.md.
"""
import argparse
import dataclasses
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

if __package__ in (None, ""):  # python benchmarks/gpu.py: import from the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from benchmarks import common
from nnbasics.train import files

DEFAULT_BUDGET_S = 460  # all steps together, on CUDA (their limits add up to 455): under 8 minutes with the start-up
QUICK_STEP_S = 240  # every step's limit in --quick (a dry run on a busy CPU)
GRACE_S = 8  # between SIGINT and SIGKILL, inside a step's limit
DATA_FOLDER = common.REPO_ROOT / ".mnist"
SIZES = "1048576,16777216,100000000"


@dataclasses.dataclass
class Step:
    name: str
    budget_s: float  # on CUDA
    argv: list  # after `python`
    quick_argv: list  # instead of argv with --quick


def steps(device: str) -> list:
    """The steps, in order; {tmp} in an argument is the step's own scratch folder."""
    pytest = ["-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "cuda", "-rfE", "--junitxml={tmp}/junit.xml"]
    if importlib.util.find_spec("xdist"):
        pytest += ["-n", "8"]
    if importlib.util.find_spec("pytest_timeout"):
        pytest += ["--timeout", "100"]
    d = ["--device", device]
    out = ["--json", "{tmp}/out.json", "--markdown", "{tmp}/out.md"]
    train = ["-m", "nnbasics.train", *d, "--out", "{tmp}/run"]
    quick_train = [*train, "--epochs", "2", "--hidden", "32", "--limit-train", "2000"]  # 2: compile_s needs a second epoch
    ops = ["-m", "benchmarks.ops", *d, "--sizes", SIZES, "--repeats", "2", "--min-run-time", "0.05", *out]
    quick_ops = ["-m", "benchmarks.ops", *d, "--quick", "--ops", "relu", "--impl", "custom", "--sizes", "4096", *out]
    memory = ["-m", "benchmarks.memory", *d, "--rows", "8192", *out]
    quick_memory = ["-m", "benchmarks.memory", *d, "--rows", "64", "--variants", "builtin,custom", *out]
    # eager only: compiling is timed by train-compile, and would take most of these steps' minute
    bench_train = ["-m", "benchmarks.train", *d, "--no-compile"]
    example = ["-m", "nnbasics.check", "docs/examples/softplus.py:Softplus", *d, "--json"]
    return [
        Step("tests", 95, [*pytest, "tests"], [*pytest, "tests/test_func.py"]),
        Step("check-ops", 15, ["-m", "nnbasics.check", *d], ["-m", "nnbasics.check", *d, "--op", "relu"]),
        Step("check-function", 20, example, [*example, "--checks", "gradcheck,reference"]),
        Step("train", 35, train, quick_train),
        Step("train-compile", 40, [*train, "--compile"], [*quick_train, "--impl", "builtin", "--compile"]),
        Step("ops-float32", 75, [*ops, "--dtype", "float32"], [*quick_ops, "--dtype", "float32"]),
        Step("ops-bfloat16", 60, [*ops, "--dtype", "bfloat16"], [*quick_ops, "--dtype", "bfloat16"]),
        Step("steps", 30, [*bench_train, "--no-time-to-accuracy", "--batch-sizes", "256,1024", "--rounds", "3",
                           "--min-run-time", "0.2", *out], [*bench_train, "--quick", "--no-time-to-accuracy", *out]),
        Step("accuracy", 40, [*bench_train, "--batch-sizes", "256", "--rounds", "1", "--min-run-time", "0.05", *out],
             [*bench_train, "--quick", "--impls", "custom", "--precisions", "float32", *out]),
        Step("graphs", 25, ["-m", "benchmarks.graphs", *d, "--rounds", "3", *out],
             ["-m", "benchmarks.graphs", *d, "--quick", "--impls", "custom", "--precisions", "float32", *out]),
        Step("memory-32k", 10, [*memory, "--classes", "32768"], [*quick_memory, "--classes", "512"]),
        Step("memory-128k", 10, [*memory, "--classes", "131072"], [*quick_memory, "--classes", "2048"]),
    ]


# --------------------------------------------------------------------------- what each step leaves

def junit_results(path: Path) -> dict:
    """Counts and the failing tests (id and first line of the message) from pytest's JUnit XML."""
    counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
    failures = []
    for case in ET.parse(path).getroot().iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        outcome = next((child for child in case if child.tag in ("failure", "error", "skipped")), None)
        if outcome is None:
            counts["passed"] += 1
            continue
        counts[{"failure": "failed", "error": "errors", "skipped": "skipped"}[outcome.tag]] += 1
        if outcome.tag != "skipped":
            message = (outcome.get("message") or outcome.text or "").strip().splitlines()
            failures.append({"test": name, "message": message[0][:300] if message else ""})
    return {**counts, "failures": failures}


def step_results(step: Step, tmp: Path, output: str) -> dict:
    """What the step left in its folder (or printed), parsed; {} when it left nothing."""
    if step.name == "tests" and (tmp / "junit.xml").exists():
        return junit_results(tmp / "junit.xml")
    if step.name.startswith("train") and (tmp / "run" / "summary.json").exists():
        summary = json.loads((tmp / "run" / "summary.json").read_text())
        keep = ("test_acc", "test_loss", "wall_s", "train_s", "compile_s", "epochs_run", "precision", "impl",
                "device_name", "torch")
        return {k: summary.get(k) for k in keep}
    if step.name == "check-function":
        try:
            return json.loads(output[output.index("{"):])
        except ValueError:
            return {}
    if step.name == "check-ops":
        return {"lines": output.strip().splitlines()[-20:]}
    if (tmp / "out.json").exists():
        return json.loads((tmp / "out.json").read_text())
    return {}


def step_markdown(record: dict, tmp: Path) -> str:
    """The step's section of gpu.md."""
    head = (f"## {record['name']}: {record['status']} ({record['seconds']:.1f} s of {record['budget_s']:.0f})\n\n"
            f"`{record['command']}`\n\n")
    results = record["results"]
    if (tmp / "out.md").exists():
        return head + (tmp / "out.md").read_text() + "\n"
    if record["name"] == "tests" and results:
        body = "{passed} passed, {failed} failed, {errors} errors, {skipped} skipped\n".format(**results)
        body += "".join(f"\n- `{f['test']}`: {f['message']}" for f in results["failures"][:60])
        return head + body + "\n\n"
    if record["name"].startswith("train") and results:
        return head + "| " + " | ".join(results) + " |\n|" + "---|" * len(results) + "\n| " + " | ".join(
            f"{v:.4g}" if isinstance(v, float) else str(v) for v in results.values()) + " |\n\n"
    if record["name"] == "check-ops" and results:
        return head + "```\n" + "\n".join(results["lines"]) + "\n```\n\n"
    if record["name"] == "check-function" and results:
        return head + "```\n" + json.dumps(results, indent=1)[:4000] + "\n```\n\n"
    return head + f"(no results; the last lines of its output:)\n\n```\n{record['output_tail']}\n```\n\n"


# --------------------------------------------------------------------------- running

def run_step(step: Step, argv: list, timeout: float, env: dict, log) -> tuple:
    """(status, return code, seconds, output) of one step, stopped with its children by ``timeout``.

    Near the limit the step's process group gets SIGINT, as Ctrl-C would (pytest then still
    writes its report of the tests that ran), and SIGKILL at the limit if it is still there.
    """
    log.write(f"\n===== {step.name}: {' '.join(argv)} (limit {timeout:.0f} s)\n")
    log.flush()
    grace = min(GRACE_S, timeout / 5)
    start = time.perf_counter()
    with subprocess.Popen(argv, cwd=common.REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, errors="replace", start_new_session=True) as proc:
        try:
            output, _ = proc.communicate(timeout=timeout - grace)
            status = "ok" if proc.returncode == 0 else "failed"
        except subprocess.TimeoutExpired:
            status = "timed out"
            os.killpg(proc.pid, signal.SIGINT)
            try:
                output, _ = proc.communicate(timeout=grace)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                output, _ = proc.communicate()
    log.write(output)
    log.flush()
    return status, proc.returncode, time.perf_counter() - start, output


def header(device: torch.device, argv) -> dict:
    env = common.environment(device, torch.float32, "python -m benchmarks.gpu", argv)
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env["gpu"] = {"name": props.name, "memory_gib": round(props.total_memory / 2**30, 1),
                      "multiprocessors": props.multi_processor_count,
                      "capability": f"{props.major}.{props.minor}"}
    env["triton"] = _version("triton")
    return env


def _version(module):
    try:
        return __import__(module).__version__
    except Exception:  # noqa: BLE001 (missing or broken: reported as absent)
        return None


def write(out: Path, head: dict, records: list, sections: list) -> None:
    files.write_json(out / "gpu.json", {"header": head, "steps": records}, indent=1)
    lines = [f"# python -m benchmarks.gpu on {head['device_name']}", "",
             *[f"- {k}: `{v}`" for k, v in head.items() if v is not None and k != "gpu"], ""]
    if "gpu" in head:
        lines += [f"- gpu: `{head['gpu']}`", ""]
    lines += ["| step | status | seconds | budget s |", "|---|---|---|---|"]
    lines += [f"| {r['name']} | {r['status']} | {r['seconds']:.1f} | {r['budget_s']:.0f} |" for r in records]
    files.write_text(out / "gpu.md", "\n".join(lines) + "\n\n" + "".join(sections))


def pack_data(folder: Path) -> int:
    """MNIST, from wherever nnbasics.train.data finds it, into ``folder/mnist/*.gz``: the cache layout, small enough to carry."""
    from nnbasics.train import data as nndata

    arrays = nndata.load("mnist")
    for split, (images, labels) in arrays.items():
        nndata.write_idx(folder / "mnist" / f"{nndata.FILES[f'{split}_images']}.gz", images)
        nndata.write_idx(folder / "mnist" / f"{nndata.FILES[f'{split}_labels']}.gz", labels.to(torch.uint8))
    print(f"MNIST written to {folder}/mnist ({sum(p.stat().st_size for p in folder.glob('mnist/*')) / 2**20:.1f} MiB)")
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="folder for gpu.json, gpu.md and gpu.log")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda", help="device (default: cuda)")
    parser.add_argument("--quick", action="store_true", help="tiny versions of every step: the dry run (seconds each)")
    parser.add_argument("--steps", help=f"comma-separated subset of {','.join(s.name for s in steps('cpu'))}")
    parser.add_argument("--budget", type=float, default=None,
                        help=f"seconds for all steps together (default: {DEFAULT_BUDGET_S}; --quick: none)")
    parser.add_argument("--data-cache", type=Path, default=None,
                        help="a folder in nnbasics' cache layout holding MNIST (default: .mnist if it exists)")
    parser.add_argument("--pack-data", type=Path, metavar="FOLDER", help="write MNIST into FOLDER for --data-cache, and stop")
    args = parser.parse_args(argv)
    if args.pack_data:
        return pack_data(args.pack_data)
    if args.out is None:
        parser.error("--out DIR is required")
    if common.cuda_missing(args.device, "python -m benchmarks.gpu"):
        return 2
    chosen = steps(args.device)
    if args.steps:
        names = args.steps.split(",")
        unknown = sorted(set(names) - {s.name for s in chosen})
        if unknown:
            parser.error(f"--steps: unknown {unknown}; choose from {','.join(s.name for s in chosen)}")
        chosen = [s for s in chosen if s.name in names]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    data = args.data_cache or (DATA_FOLDER if DATA_FOLDER.is_dir() else None)
    if data is not None:
        env["NNBASICS_CACHE"] = str(Path(data).resolve())
    budget = args.budget or (None if args.quick else DEFAULT_BUDGET_S)
    deadline = None if budget is None else time.monotonic() + budget

    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="nnbasics-gpu-") as scratch:  # not in --out: the device tool brings back 8 files
        return run_all(args, chosen, env, deadline, Path(scratch), argv)


def run_all(args, chosen, env, deadline, scratch: Path, argv) -> int:
    head = header(torch.device(args.device), argv)
    head["data_cache"] = env.get("NNBASICS_CACHE")
    records, sections = [], []
    with open(args.out / "gpu.log", "a") as log:
        for step in chosen:
            tmp = scratch / step.name
            tmp.mkdir(parents=True, exist_ok=True)
            cmd = [sys.executable, *[a.format(tmp=tmp) for a in (step.quick_argv if args.quick else step.argv)]]
            limit = QUICK_STEP_S if args.quick else step.budget_s
            if deadline is not None:
                limit = min(limit, deadline - time.monotonic())
            if limit < 5:
                status, rc, seconds, output = "not run (out of time)", None, 0.0, ""
            else:
                status, rc, seconds, output = run_step(step, cmd, limit, env, log)
            record = {"name": step.name, "status": status, "returncode": rc, "seconds": round(seconds, 1),
                      "budget_s": limit if args.quick else step.budget_s,
                      "command": " ".join(["python", *cmd[1:]]).replace(str(common.REPO_ROOT) + "/", ""),
                      "output_tail": "\n".join(output.strip().splitlines()[-15:])}
            record["results"] = step_results(step, tmp, output)
            records.append(record)
            sections.append(step_markdown(record, tmp))
            write(args.out, head, records, sections)
            print(f"[gpu] {step.name}: {status} in {seconds:.1f} s (limit {limit:.0f} s)", flush=True)
            if status != "ok":
                print(record["output_tail"], flush=True)
    failed = [r["name"] for r in records if r["status"] != "ok"]
    print(f"[gpu] {len(records) - len(failed)} of {len(records)} steps ok" + (f"; not ok: {', '.join(failed)}" if failed else "")
          + f"; results in {args.out}/gpu.json, gpu.md, gpu.log")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

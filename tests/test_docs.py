"""The docs say what the code does: each documented command whose output a page quotes is run
(the same command where it is short, else a quick variant of it), and the lines that do not depend
on the machine are compared with the page; the learners' exercises, answers and notebook run.

What depends on the machine: timings and speeds, always; every number of a training run where the
machine chooses another precision than the quoted run's (``--amp auto``; the runs here are given the
quoted run's 2 threads, since another thread count rounds differently); max|diff| of
``nnbasics.check`` (float64 rounding, which follows the CPU's math library).
"""
import importlib.util
import itertools
import json
import math
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from nnbasics import train
from nnbasics.testing import check_function

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
EXERCISES = {"sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "ReLU", "linear": "Linear",
             "softmax_cross_entropy": "SoftmaxCrossEntropy"}


def quoted(page: Path, command: str) -> list:
    """The output lines a page quotes under ``$ command`` in a fenced block."""
    text = page.read_text()
    start = text.index(f"$ {command}\n") + len(f"$ {command}\n")
    return text[start:text.index("```", start)].rstrip("\n").splitlines()


def run(argv, cwd=ROOT, timeout=600, **env) -> list:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), **env)
    done = subprocess.run([sys.executable, *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return (done.stderr + done.stdout).rstrip("\n").splitlines()


def numbers_masked(line: str) -> str:
    return re.sub(r"\d[\d,]*(\.\d+)?(e[+-]\d+)?", "N", line)


def timings_masked(line: str) -> str:
    """A training line without what the machine's speed decides: seconds, samples/s."""
    line = re.sub(r"[\d,]+ samples/s", "N samples/s", line)
    return re.sub(r"\d+\.\d s", "N s", line)


def without_data_source(lines: list) -> list:
    """Where the data came from (the cache, a folder, a mirror: docs/data.md) is the machine's."""
    return [line for line in lines if not line.startswith("nnbasics: mnist: ")]


def cpu_features_masked(line: str) -> str:
    """A line without the CPU's instruction sets: '(avx512_bf16, amx)' on one CPU is '(avx512_bf16)' on another."""
    return re.sub(r"native bfloat16 dot products \([^)]*\)", "native bfloat16 dot products (FEATURES)", line)


def precision(lines: list) -> str:
    """The precision clause of a run's header line ('float32 + bfloat16 autocast (...)')."""
    header = next(line for line in lines if line.startswith("mnist: MLP "))
    return header.split(" on ", 1)[1].split(" -> ")[0]


# --------------------------------------------------------------------------- python -m nnbasics.check

def test_check_prints_what_verification_md_and_the_readme_quote():
    lines = run(["-m", "nnbasics.check"])
    def mask(line):
        return re.sub(r"max\|diff\| vs torch: \S+", "max|diff| vs torch: X", line)
    assert [mask(line) for line in lines] == [mask(line) for line in quoted(DOCS / "verification.md", "python -m nnbasics.check")]
    readme = [line for line in quoted(ROOT / "README.md", "python -m nnbasics.check") if line != "..."]
    assert all(mask(line) in map(mask, lines) for line in readme), readme


# --------------------------------------------------------------------------- a short run, and evaluate

def test_the_short_run_and_its_evaluation_print_what_training_basics_md_quotes(tmp_path):
    page = DOCS / "training-basics.md"
    command = "python -m nnbasics.train --epochs 1 --limit-train 4096 --out runs/short"
    # The quoted run had 2 threads: sums split over another number of threads round differently.
    lines = without_data_source(run(shlex.split(command)[1:], cwd=tmp_path, OMP_NUM_THREADS="2"))
    doc = without_data_source(quoted(page, command))
    # The numbers are compared only on a CPU like the quoted run's (the same precision, chosen for
    # the same instruction sets: AMX and AVX512-BF16 kernels round bfloat16 products differently).
    same_machine = precision(lines) == precision(doc)
    mask = timings_masked if same_machine else (lambda line: numbers_masked(timings_masked(line)))
    assert [mask(cpu_features_masked(line)) for line in lines] == [mask(cpu_features_masked(line)) for line in doc]

    # What the page says of short runs: each step recorded; the loss falls, its mean under ln 10.
    (record,) = [json.loads(line) for line in (tmp_path / "runs" / "short" / "metrics.jsonl").read_text().splitlines()]
    assert len(record["step_loss"]) == len(record["step_acc"]) == 16
    assert record["step_loss"][-1] < record["step_loss"][0] / 2 and record["train_loss"] < math.log(10)

    evaluated = without_data_source(run(["-m", "nnbasics.train.evaluate", "runs/short"], cwd=tmp_path, OMP_NUM_THREADS="2"))
    doc = without_data_source(quoted(page, "python -m nnbasics.train.evaluate runs/short"))
    assert [mask(cpu_features_masked(line)) for line in evaluated] == [mask(cpu_features_masked(line)) for line in doc]
    assert evaluated[2].startswith("summary.json: the same, ")  # whatever the machine


# --------------------------------------------------------------------------- the exercises

def _module(path: Path):
    spec = importlib.util.spec_from_file_location(f"docs_{path.parent.name}_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # Dynamo looks a Function's module up by name
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", list(EXERCISES))
def test_each_answer_gets_no_fail_and_each_exercise_fails_until_solved(name):
    answer = _module(DOCS / "exercises" / "answers" / f"{name}.py")
    report = check_function(getattr(answer, EXERCISES[name]), *answer.sample_inputs(), reference=answer.reference)
    assert not report.failed, str(report)
    assert f"check docs/exercises/answers/{name}.py:{EXERCISES[name]}" in (DOCS / "exercises" / "answers" / f"{name}.py").read_text()

    exercise = _module(DOCS / "exercises" / f"{name}.py")
    unsolved = check_function(getattr(exercise, EXERCISES[name]), *exercise.sample_inputs(),
                              reference=exercise.reference, checks=["gradcheck"])
    assert "NotImplementedError: write" in unsolved.results["gradcheck"].message


@pytest.mark.parametrize("page", ["README.md", "README.pt.md"])
def test_every_exercise_and_answer_is_on_the_ladder_page(page):
    ladder = (DOCS / "exercises" / page).read_text()
    for name, cls in EXERCISES.items():
        assert f"python -m nnbasics.check docs/exercises/{name}.py:{cls}" in ladder
        assert f"(answers/{name}.py)" in ladder
    for start in ("learn.md", "learn.pt.md"):
        text = (DOCS / start).read_text()
        for name in EXERCISES:
            assert f"(exercises/answers/{name}.py)" in text, (start, name)


def test_the_mlp_exercise_trains_your_functions_beside_nnbasics():
    """A quick variant of the quoted command: the same lines, and the two networks agree."""
    doc = quoted(DOCS / "exercises" / "README.md", "python docs/exercises/mlp.py --answers")
    lines = run(["docs/exercises/mlp.py", "--answers", "--epochs", "2", "--limit-train", "2048", "--hidden", "32"])
    assert [numbers_masked(line) for line in lines] == [numbers_masked(line) for line in doc]
    yours, theirs = (line.split("Functions: ")[1] for line in lines[1:])
    assert yours == theirs


# --------------------------------------------------------------------------- the course preset

def test_the_learn_md_table_goes_from_the_course_preset_to_the_default():
    """Each row of the table adds flags to the one above, and the last is the default run; the Portuguese page has
    the same commands."""
    table = r"^\| [A-M] \| `python -m nnbasics.train ?([^`]*)`"
    rows = re.findall(table, (DOCS / "learn.md").read_text(), re.MULTILINE)
    assert rows == re.findall(table, (DOCS / "learn.pt.md").read_text(), re.MULTILINE)
    assert len(rows) == 13, rows
    assert rows[0] == "--preset course" and rows[-1] == ""
    course, first_quarter = train.parse_args(shlex.split(rows[0])), train.parse_args(shlex.split(rows[3]))
    assert (course.output, course.normalize, course.every) == ("sigmoid", False, 4)  # the course's Keras run
    assert (first_quarter.output, first_quarter.normalize, first_quarter.every, first_quarter.limit_train) == (
        "logits", True, 1, 13750)
    for above, row in itertools.pairwise(rows[1:-1]):
        assert row.startswith(above), (above, row)
    last = train.parse_args(shlex.split(rows[-2]))
    default = train.parse_args([])
    changed = {k for k in vars(default) if getattr(last, k) != getattr(default, k)} - {"preset"}
    # what the last row adds; --limit-train 55000 is the whole training split, which the default trains on
    assert changed == {"label_smoothing", "weight_decay", "batch_size", "limit_train", "epochs"}, changed
    assert last.limit_train == 55000


# --------------------------------------------------------------------------- the notebook

@pytest.mark.parametrize("notebook", ["from_numpy.ipynb", "from_numpy.pt.ipynb"])
def test_the_notebook_runs_from_top_to_bottom(tmp_path, notebook):
    try:
        import nbmake  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            raise
        pytest.skip("nbmake is not installed (python3 quickstart.py test installs it)")
    run(["-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbmake", str(DOCS / "notebooks" / notebook)],
        cwd=tmp_path)


@pytest.mark.parametrize("name", ["from_numpy.ipynb", "from_numpy.pt.ipynb"])
def test_the_notebook_is_stored_without_outputs(name):
    notebook = json.loads((DOCS / "notebooks" / name).read_text())
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None


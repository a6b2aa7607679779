"""The learner's path in two languages: each English page and its Portuguese twin link to each other and keep in
step (the same headings at each level, the same commands, the same measured figures), so that a change to one
without the other fails here."""
import io
import json
import re
import tokenize
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
TWINS = [("learn.md", "learn.pt.md"), ("exercises/README.md", "exercises/README.pt.md")]
EXERCISES = ["sigmoid", "tanh", "relu", "linear", "softmax_cross_entropy"]


def _headings(text):
    """How many headings of each level, outside code blocks."""
    text = re.sub(r"```.*?```", "", text, flags=re.DOTALL)
    return [len(m) for m in re.findall(r"^(#+) ", text, re.MULTILINE)]


def _commands(text):
    """The commands a page gives (in code spans and blocks), without the --lang pt the Portuguese side adds, and
    with its placeholders read in English (ARQUIVO.py:NOME is FILE.py:NAME)."""
    found = re.findall(r"(?:`|\$ )(python (?:-m nnbasics\.\w+|docs/)[^`\n]*)", text)
    found = [c.replace(" --lang pt", "").replace("ARQUIVO.py:NOME", "FILE.py:NAME").strip() for c in found]
    return sorted(set(found))


def _figures(text):
    """The measured figures: percentages and seconds, decimal commas read as points (86,5% = 86.5%)."""
    text = re.sub(r"(\d),(\d)", r"\1.\2", re.sub(r"(\d)\.(\d{3})\b", r"\1\2", text))
    return sorted(re.findall(r"\b\d+(?:\.\d+)?(?:%| s\b)", text))


@pytest.mark.parametrize("en, pt", TWINS)
def test_each_page_and_its_portuguese_twin_keep_in_step(en, pt):
    english, portuguese = (DOCS / en).read_text(), (DOCS / pt).read_text()
    assert Path(pt).name in english and Path(en).name in portuguese, "each links to the other"
    assert _headings(english) == _headings(portuguese)
    assert _commands(english) == _commands(portuguese)
    assert _figures(english) == _figures(portuguese)


def test_the_portuguese_pages_point_to_the_portuguese_path():
    learn = (DOCS / "learn.pt.md").read_text()
    for link in ("ops.pt.md", "exercises/README.pt.md", "notebooks/from_numpy.pt.ipynb"):
        assert f"({link}" in learn, link
    exercises = (DOCS / "exercises" / "README.pt.md").read_text()
    assert "(../learn.pt.md)" in exercises and "(../ops.pt.md#" in exercises
    assert "(../ops.md#" not in exercises and "(../learn.md)" not in exercises


# The sections of ops.md the path uses, and their Portuguese twins in ops.pt.md.
SECTIONS = {"Before the ops: a layer, and the chain rule": "Antes das operações: uma camada e a regra da cadeia",
            "linear": "linear", "sigmoid": "sigmoide", "tanh": "tanh",
            "relu, leaky_relu, hardtanh: piecewise linear": "relu", "cross_entropy": "entropia cruzada"}


def _section(text, title):
    """The text under '## title' up to the first heading after it (the learner's part: engineering follows
    under a heading of its own)."""
    start = text.index(f"\n## {title}\n") + len(title) + 5
    end = re.search(r"^#{2,3} ", text[start:], re.MULTILINE)
    return text[start:start + end.start()] if end else text[start:]


@pytest.mark.parametrize("en, pt", SECTIONS.items())
def test_ops_pt_carries_what_the_path_needs_of_each_ops_section(en, pt):
    english, portuguese = _section((DOCS / "ops.md").read_text(), en), _section((DOCS / "ops.pt.md").read_text(), pt)
    formulas = lambda t: [line.strip() for line in t.splitlines() if line.startswith("    ")]
    assert formulas(english) == formulas(portuguese)
    exercises = lambda t: sorted(set(re.findall(r"exercises/(\w+)\.py", t)))
    assert exercises(english) == exercises(portuguese)
    if "Before" not in en:  # an op the path writes: its learner's part
        assert "**Saved for backward**" in english and "**O que se guarda**" in portuguese
        assert "classic mistake" in english and ("erro clássico" in portuguese or "erros clássicos" in portuguese)


def test_ops_pt_links_back_and_ops_md_links_to_it():
    assert "(ops.md)" in (DOCS / "ops.pt.md").read_text() and "(ops.pt.md)" in (DOCS / "ops.md").read_text()


def _code(source):
    """A code cell without its comments and strings: what the two languages must share."""
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    return [t.string for t in tokens if t.type not in (tokenize.COMMENT, tokenize.STRING, tokenize.NL,
                                                          tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT)]


def test_the_notebook_and_its_portuguese_twin_have_the_same_cells():
    en = json.loads((DOCS / "notebooks" / "from_numpy.ipynb").read_text())["cells"]
    pt = json.loads((DOCS / "notebooks" / "from_numpy.pt.ipynb").read_text())["cells"]
    assert [c["cell_type"] for c in en] == [c["cell_type"] for c in pt]
    for a, b in zip(en, pt):
        a, b = "".join(a["source"]), "".join(b["source"])
        if re.match(r"#+ ", a):
            assert re.match(r"#+ ", a).group() == re.match(r"#+ ", b).group()
        if "](" in a:  # the same figures shown, each page linking to its own language
            assert re.findall(r"\]\(([\w.]+\.png)\)", a) == re.findall(r"\]\(([\w.]+\.png)\)", b)
    code = lambda cells: [_code("".join(c["source"])) for c in cells if c["cell_type"] == "code"]
    assert _same_but_render(code(en), code(pt))
    text = lambda cells: "".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    assert "from_numpy.pt.ipynb" in text(en) and "from_numpy.ipynb" in text(pt)
    assert "../learn.pt.md" in text(pt) and "../exercises/README.pt.md" in text(pt)
    assert (DOCS / "notebooks" / "activations.png").is_file()


def _same_but_render(en, pt):
    """The Portuguese notebook prints reports with messages.render(report, "pt"): the rest of each cell is equal."""
    strip = lambda cell: [t for t in cell if t not in ("render", "(", ")", ",", "from", "nnbasics", ".", "testing",
                                                       "messages", "import")]
    return [strip(c) for c in en] == [strip(c) for c in pt]


def test_the_portuguese_notebook_is_stored_without_outputs():
    for cell in json.loads((DOCS / "notebooks" / "from_numpy.pt.ipynb").read_text())["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None


@pytest.mark.parametrize("name", EXERCISES)
def test_each_exercise_and_answer_speaks_both_languages(name):
    exercise = (DOCS / "exercises" / f"{name}.py").read_text()
    doc = exercise.split('"""')[1]
    english, _, portuguese = doc.partition("Em português:")
    command = re.search(r"python -m nnbasics\.check \S+", english).group()
    assert f"{command} --lang pt" in portuguese and "docs/exercises/README.pt.md" in portuguese
    assert "(pt: escreva" in exercise  # the not-yet-written message, in both languages
    answer = (DOCS / "exercises" / "answers" / f"{name}.py").read_text()
    assert "Em português:" in answer.split('"""')[1]

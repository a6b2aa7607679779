"""The checker's words for a learner, in English and in (Brazilian) Portuguese.

Each entry is a template in both languages with the same named fields. The checks write English (``say``);
``translate`` turns a line into Portuguese by matching it against the English templates and filling the
Portuguese one, field by field (a field that is itself a template's text is translated too). A line no template
matches stays English. ``python -m nnbasics.check FILE.py:NAME --lang pt`` prints the report this way, and so
does a Portuguese locale (``LC_ALL``, ``LC_MESSAGES`` or ``LANG`` starting with ``pt``, e.g. pt_BR.UTF-8).
"""
import functools
import os
import re

LANGS = ("en", "pt")

# key: (English, Portuguese)
TEMPLATES = {
    # --- the report
    "header": ("check_function({target}): {p} passed, {w} warned, {f} failed, {s} skipped",
               "check_function({target}): aprovadas {p}, com aviso {w}, reprovadas {f}, puladas {s}"),
    "blocked": ("blocked by {c}: it depends on what {c} found wrong",
                "bloqueada por {c}: depende do que {c} achou errado"),
    # --- gradcheck, with and without a diagnosis (checks/derivatives.py)
    "gradcheck_diagnosed": ("{what}: {fix} (gradcheck, against finite differences: {where}; -v prints its Jacobians)",
                            "{what}: {fix} (gradcheck, contra diferenças finitas: {where}; -v mostra as jacobianas)"),
    "gradcheck_undiagnosed": ("backward disagrees with finite differences ({where}): {fix}",
                              "o backward discorda das diferenças finitas ({where}): {fix}"),
    "jacobian": ("Jacobian mismatch for output {o} with respect to input {i}",
                 "jacobiana diferente na saída {o} em relação à entrada {i}"),
    "fix_undiagnosed": (("re-derive that input's gradient; backward must return grad_output times the derivative (the "
                        "chain rule), one gradient per forward input; if the gradient is deliberately not the "
                        "derivative (straight-through, gradient reversal, surrogate), pass true_gradient=False "
                        "(--not-true-gradient)"),
                        ("refaça a derivada dessa entrada; o backward deve devolver grad_output vezes a derivada (a "
                        "regra da cadeia), um gradiente por entrada do forward; se o gradiente não é a derivada de "
                        "propósito (straight-through, inversão de gradiente, substituto), passe true_gradient=False "
                        "(--not-true-gradient)")),
    # --- the diagnoses (checks/diagnose.py)
    "excerpt": ("expected {want}, yours {mine} (elements {idx} of {shape})",
                "esperado {want}, o seu {mine} (elementos {idx} de {shape})"),
    "point": ("x = {x}: expected {want}, yours {mine}", "x = {x}: esperado {want}, o seu {mine}"),
    "point_xy": ("x = {x} (y = {y}): expected {want}, yours {mine}",
                 "x = {x} (y = {y}): esperado {want}, o seu {mine}"),
    "input_grad": ("input {i}'s gradient", "o gradiente da entrada {i}"),
    "true_zero": (("the true gradient of input {i} is zero at these inputs (a step, a rounding) and yours is not; "
                  "{excerpt}"),
                  ("o gradiente verdadeiro da entrada {i} é zero nestas entradas (um degrau, um arredondamento) e o "
                  "seu não; {excerpt}")),
    "fix_true_zero": (("a straight-through, surrogate or reversed gradient is declared with true_gradient=False "
                      "(--not-true-gradient)"),
                      ("um gradiente straight-through, substituto ou invertido se declara com true_gradient=False "
                      "(--not-true-gradient)")),
    "no_grad_output": ("{what} does not change when grad_output doubles; {excerpt}",
                       "{what} não muda quando grad_output dobra; {excerpt}"),
    "fix_no_grad_output": ("backward returns the derivative alone, so multiply it by grad_output (the chain rule)",
                           "o backward devolve só a derivada, então multiplique-a por grad_output (a regra da cadeia)"),
    "swapped": ("{what} is input {j}'s gradient: backward returns the gradients in the wrong order (swapped)",
                "{what} é o gradiente da entrada {j}: o backward devolve os gradientes fora de ordem (trocados)"),
    "fix_swapped": ("return one gradient per input, in the order of forward's inputs",
                    "devolva um gradiente por entrada, na ordem das entradas do forward"),
    "factor_sign": ("{what} is the right one times -1 (a sign); {excerpt}",
                    "{what} é o valor certo vezes -1 (um sinal); {excerpt}"),
    "fix_factor_sign": ("find the sign that flipped (the derivative of e^(-x) is -e^(-x); of 1/u, -u'/u²)",
                        "ache o sinal trocado (a derivada de e^(-x) é -e^(-x); a de 1/u, -u'/u²)"),
    "factor_plain": ("{what} is the right one times {c}; {excerpt}", "{what} é o valor certo vezes {c}; {excerpt}"),
    "fix_factor_plain": ("find the extra factor {c}", "ache o fator {c} que sobra"),
    "factor_size": (("{what} is the right one times {n} (a size of the inputs: a missing 1/{n}, as in a mean); "
                    "{excerpt}"),
                    "{what} é o valor certo vezes {n} (um tamanho das entradas: falta 1/{n}, como numa média); {excerpt}"),
    "fix_factor_size": ("divide by {n}, since the loss is a mean over {n} values and so is its gradient",
                        "divida por {n}, já que a perda é uma média de {n} valores, e o gradiente dela também"),
    "factor_inverse_size": ("{what} is the right one times 1/{n} (a size of the inputs: a 1/{n} too many); {excerpt}",
                            "{what} é o valor certo vezes 1/{n} (um tamanho das entradas: 1/{n} a mais); {excerpt}"),
    "fix_factor_inverse_size": ("drop the extra 1/{n}", "tire o 1/{n} que sobra"),
    "transposed": ("{what} is the transpose of the right one; {excerpt}", "{what} é a transposta da certa; {excerpt}"),
    "fix_transposed": ("swap the operands of the matmul, or .mT", "troque os operandos do produto de matrizes, ou use .mT"),
    "wrong": ("{what} is wrong; {excerpt}", "{what} está errado; {excerpt}"),
    "fix_wrong": (("re-derive it: backward returns grad_output times the derivative (the chain rule), one gradient per "
                  "forward input"),
                  ("refaça a derivada: o backward devolve grad_output vezes a derivada (a regra da cadeia), um gradiente "
                  "por entrada do forward")),
    "at_output": ("your dy/d{name} is evaluated at the output y instead of the input {name} ({points})",
                  "a sua dy/d{name} está calculada na saída y em vez de na entrada {name} ({points})"),
    "fix_at_output": ("you saved y, so write dy/dx as an expression in y that gives f'(x) (f' of y is another number)",
                      ("você guardou y, então escreva dy/dx como uma expressão em y que dê f'(x) (f' de y é outro "
                      "número)")),
    "grad_of": ("the gradient of {name}", "o gradiente de {name}"),
    "your_derivative": ("your dy/d{name}", "a sua dy/d{name}"),
    "form_dropped": ("a term is missing: dy/dx is {want}, yours looks like {mine} ({points})",
                     "falta um termo: dy/dx é {want}, a sua parece {mine} ({points})"),
    "form_sign": ("a sign inside is wrong: dy/dx is {want}, yours looks like {mine} ({points})",
                  "um sinal lá dentro está errado: dy/dx é {want}, a sua parece {mine} ({points})"),
    "form_other": ("dy/dx is {want} here, yours looks like {mine} ({points})",
                   "dy/dx aqui é {want}, a sua parece {mine} ({points})"),
    "fix_form": ("compare your formula with {want}, term by term", "compare a sua fórmula com {want}, termo a termo"),
    "derivative_wrong": ("your dy/d{name} is wrong ({points})", "a sua dy/d{name} está errada ({points})"),
    "fix_derivative": ("re-derive it, then write it with what ctx saved",
                       "refaça a derivada e escreva-a com o que o ctx guardou"),
    # --- a backward that raises (checker.py's first call)
    "crash": ("{name}.backward raised {exc}; every other check needs a working backward",
              "{name}.backward levantou {exc}; todas as outras verificações precisam de um backward que funcione"),
    "crash_forward": ("forward raised {exc} on the sample inputs; every other check needs a working call",
                      ("o forward levantou {exc} nas entradas de exemplo; todas as outras verificações precisam de uma "
                      "chamada que funcione")),
    "not_implemented": ("NotImplementedError: {en} (pt: {pt})", "NotImplementedError: {pt}"),
    "name_error": ("NameError: name '{name}' is not defined: {why}", "NameError: o nome '{name}' não está definido: {why}"),
    "unsaved_one": (("only {saved} was saved (ctx.saved_tensors), so backward has no {name}: write the derivative "
                    "with {saved}, or save {name} in setup_context"),
                    ("só {saved} foi guardado (ctx.saved_tensors), então o backward não tem {name}: escreva a "
                    "derivada com {saved}, ou guarde {name} em setup_context")),
    "unsaved_many": (("only {saved} were saved (ctx.saved_tensors), so backward has no {name}: write the derivative "
                     "with those, or save {name} in setup_context"),
                     ("só {saved} foram guardados (ctx.saved_tensors), então o backward não tem {name}: escreva a "
                     "derivada com eles, ou guarde {name} em setup_context")),
    "unsaved_unknown": (("backward has no {name}: it sees only grad_output and what ctx.saved_tensors gives back; "
                        "save {name} in setup_context"),
                        ("o backward não tem {name}: ele só vê grad_output e o que ctx.saved_tensors devolve; guarde "
                        "{name} em setup_context")),
}

# The lines of a sound Function's report and the other findings a learner meets on the exercises: English as the
# checks write it, then Portuguese (no fields: matched as they are).
LINES = {
    "first derivatives agree with finite differences (float64)":
        "as derivadas primeiras concordam com as diferenças finitas (float64)",
    "second derivatives agree with finite differences (float64)":
        "as derivadas segundas concordam com as diferenças finitas (float64)",
    "vmap, grad and vmap(grad) agree with plain autograd; jvp runs (jvp not tried: no jvp, see forward_ad)":
        "vmap, grad e vmap(grad) concordam com o autograd comum; jvp roda (jvp não testado: não há jvp, veja "
        "forward_ad)",
    "the same gradients for a transposed, expanded (stride 0) or sliced grad_output as for a contiguous one":
        "os mesmos gradientes para um grad_output transposto, expandido (stride 0) ou fatiado que para um contíguo",
    "each gradient has exactly its input's shape, dtype and device, before autograd's engine sees it":
        "cada gradiente tem exatamente a forma, o dtype e o dispositivo da sua entrada, antes que o motor do "
        "autograd o veja",
    "backward returns None for every input that needs no gradient, and reads every tensor it saves":
        "o backward devolve None para cada entrada que não precisa de gradiente, e lê cada tensor que guarda",
    "with any one input requiring grad, backward returns None for the others and saves only what it reads":
        "com uma só entrada pedindo gradiente, o backward devolve None para as outras e guarda só o que lê",
    "no tensor kept as an attribute of ctx": "nenhum tensor guardado como atributo do ctx",
    "outputs and ctx freed by reference counting as soon as the outputs are dropped (after forward and after "
    "backward)": "saídas e ctx liberados pela contagem de referências assim que as saídas são descartadas (depois "
                 "do forward e depois do backward)",
    "forward leaves its inputs, backward its grad_output and saved tensors untouched":
        "o forward não mexe nas suas entradas, nem o backward no seu grad_output e nos tensores guardados",
    "outputs and gradients equal the reference (float64 tight, float32 loose, normal/large/small inputs)":
        "saídas e gradientes iguais aos da referência (float64 justo, float32 folgado, entradas normais/grandes/"
        "pequenas)",
    "not a torch.library custom op: nothing to register-check (torch.library.opcheck)":
        "não é uma custom op de torch.library: nada a verificar no registro (torch.library.opcheck)",
    "save each tensor whenever a gradient that reads it is needed":
        "guarde cada tensor sempre que um gradiente que o lê for pedido",
    "torch.compile(torch.func.grad(...), fullgraph=True) gives eager torch.func.grad's gradients":
        "torch.compile(torch.func.grad(...), fullgraph=True) dá os mesmos gradientes que torch.func.grad no modo eager",
    "outputs and gradients equal the reference's in the same region":
        "saídas e gradientes iguais aos da referência na mesma região",
    "runs (no reference to compare)": "roda (sem referência para comparar)",
    ("decorate forward with @torch.amp.custom_fwd(device_type=...) and backward with @torch.amp.custom_bwd("
     "device_type=...) so that backward runs in forward's autocast state, or cast inside (grad.to(x.dtype))"):
        ("decore o forward com @torch.amp.custom_fwd(device_type=...) e o backward com @torch.amp.custom_bwd("
         "device_type=...), para que o backward rode no mesmo estado de autocast do forward, ou converta dentro "
         "(grad.to(x.dtype))"),
}
TEMPLATES.update({
    "compile_pass": ("torch.compile(fullgraph=True, backend={backend}): one graph, outputs and gradients equal eager",
                     ("torch.compile(fullgraph=True, backend={backend}): um grafo só, saídas e gradientes iguais aos "
                     "do modo eager")),
    "no_jvp": (("{name} defines no jvp: forward-mode AD (torch.func.jvp, jacfwd, hessian, torch.autograd.forward_ad) is "
               "unavailable; to enable it, define jvp(ctx, *tangents) with ctx.save_for_forward"),
               ("{name} não define jvp: o AD no modo direto (torch.func.jvp, jacfwd, hessian, torch.autograd.forward_ad) "
               "não está disponível; para tê-lo, defina jvp(ctx, *tangents) com ctx.save_for_forward")),
    "mutation_grad_output": (
        ("{name}.backward modified grad_output {i} in place: autograd may hand the same buffer to other nodes, whose "
        "gradients then change; compute a new tensor (grad * d, not grad.mul_(d))"),
        ("{name}.backward modificou grad_output {i} no lugar: o autograd pode entregar o mesmo buffer a outros nós, "
        "cujos gradientes então mudam; calcule um tensor novo (grad * d, não grad.mul_(d))")),
    "grad_shape": (
        ("{name}.backward returned a gradient of shape {to} for input {i} of shape {shape}, which autograd refuses: "
        "return exactly the input's shape (the gradient of a (m, n) input is (m, n); reduce broadcast dims with "
        ".sum_to_size)"),
        ("{name}.backward devolveu um gradiente de forma {to} para a entrada {i}, de forma {shape}, e o autograd o "
        "recusa: devolva exatamente a forma da entrada (o gradiente de uma entrada (m, n) é (m, n); reduza as "
        "dimensões de broadcast com .sum_to_size)")),
    "grad_count": (
        ("{name}.backward returned {n} value(s) for {m} forward input(s): return one gradient per input of forward, "
        "None for those without one (non-tensors too)"),
        ("{name}.backward devolveu {n} valor(es) para {m} entrada(s) do forward: devolva um gradiente por entrada do "
        "forward, None para as que não têm (as que não são tensores também)")),
    "autocast_pass": ("forward under {name}, backward after it: {compared}",
                      "forward sob {name}, backward depois dele: {compared}"),
    "autocast_raises": (("with forward under {name} and backward after it, the Function raises {exc}: a limitation, "
                         "mixed-precision training (torch.autocast) cannot use it; {fix}"),
                        ("com o forward sob {name} e o backward depois dele, a Function levanta {exc}: uma limitação, "
                         "o treino em precisão mista (torch.autocast) não pode usá-la; {fix}")),
    "gradcheck_pass": ("first derivatives agree with finite differences ({dtype}){drawn}",
                       "as derivadas primeiras concordam com as diferenças finitas ({dtype}){drawn}"),
    "saved_none": (
        ("with only input {k} requiring grad, {name}.backward raised {exc}: a tensor it reads was saved as None because "
        "ctx.needs_input_grad said no gradient needs it, but the gradient of input {j} does"),
        ("com só a entrada {k} pedindo gradiente, {name}.backward levantou {exc}: um tensor que ele lê foi guardado "
        "como None porque ctx.needs_input_grad disse que nenhum gradiente precisava dele, mas o gradiente da entrada "
        "{j} precisa")),
})


_OUTER = ("gradcheck_diagnosed", "gradcheck_undiagnosed", "crash", "crash_forward")
_GREEDY = {"what"}  # the diagnosis before ": {fix}" may hold ': ' itself (x = 1: expected ...); a fix never does


def say(key: str, **fields) -> str:
    """The English text of ``key`` with its fields filled in."""
    return TEMPLATES[key][0].format(**fields)


@functools.cache
def _patterns():
    # The templates that hold others first (a whole gradcheck line), then the one with the most fixed words: the most
    # specific reading of a line wins.
    order = sorted(TEMPLATES, key=lambda k: (k not in _OUTER, -len(re.sub(r"\{\w+\}", "", TEMPLATES[k][0]))))
    found = []
    for en, pt in (TEMPLATES[k] for k in order):
        parts = re.split(r"\{(\w+)\}", en)
        seen, regex = set(), ""
        for k, part in enumerate(parts):
            if k % 2 == 0:
                regex += re.escape(part)
            else:
                lazy = "" if part in _GREEDY else "?"
                regex += f"(?P={part})" if part in seen else f"(?P<{part}>.*{lazy})"
                seen.add(part)
        found.append((re.compile(regex, re.DOTALL), pt))
    return found


def translate(text: str, lang: str = "en") -> str:
    """``text`` (one line of the checker's, English) in ``lang``; the parts no template matches stay as they are."""
    if lang == "en" or not text:
        return text
    if text in LINES:
        return LINES[text]
    for regex, pt in _patterns():
        m = regex.fullmatch(text)
        if m:
            return pt.format(**{k: translate(v, lang) for k, v in m.groupdict().items()})
    if "; " in text:  # several findings joined: each on its own
        parts = text.split("; ")
        done = [translate(p, lang) for p in parts]
        if done != parts:
            return "; ".join(done)
    return text


def language(explicit=None, environ=None) -> str:
    """``explicit`` if given, else 'pt' for a Portuguese locale (LC_ALL, then LC_MESSAGES, then LANG), else 'en'."""
    if explicit:
        return explicit
    environ = os.environ if environ is None else environ
    for var in ("LC_ALL", "LC_MESSAGES", "LANG"):
        value = environ.get(var)
        if value:
            return "pt" if value.lower().startswith("pt") else "en"
    return "en"


def render(report, lang: str = "en") -> str:
    """The report's text (as ``str(report)``) in ``lang``: the header and every check's line."""
    if lang == "en":
        return str(report)
    head, strict, _ = str(report).splitlines()[0].partition(" (strict: warnings fail)")
    head = translate(head, lang) + (" (estrito: avisos falham)" if strict else "")
    body = [f"{r.status.upper():<4}  {r.name:<16} {translate(r.message, lang)}" for r in report.results.values()]
    return "\n".join([head] + body)

"""scorch's `math_answer` reward (rewards/math_answer.cpp, math_extract.cpp) in Python, for TRL's
GRPOTrainer: 1.0 when the completion's final answer equals the gold `answer`, else 0.0.

Extraction follows math_extract.cpp step by step: the last \\boxed{...} / \\fbox{...} (an unclosed
last box is no answer), then the last "answer is X", then the last "#### X", then the last number;
a completion that only repeats the prompt has no answer. Equivalence covers what arithmetic answers
need: equal normalised strings, or numbers (integers, decimals, a/b, a trailing %) within a relative
1e-4. It is not the whole of math_equal.cpp (no LaTeX evaluation, tuples or intervals): the bench
checks it against `scorch reward` on the completions TRL sampled, and reports any disagreement."""
import re

MAX_PHRASE_CHARS = 200
SPACE = " \t\n\r\f\v"


def _collapse_spaces(s):
    return " ".join(s.split(None)) if s else ""


def echoes_prompt(prompt, completion):
    visible = sum(1 for c in completion if c not in " \n\t\r")
    if visible == 0 or visible > len(prompt):
        return False
    c, p = _collapse_spaces(completion), _collapse_spaces(prompt)
    if not c:
        return False
    return c == p or (len(c) >= min(len(p), 20) and c in p)


def _rfind_box(text):
    best, best_len = -1, 0
    for cmd in ("\\boxed", "\\fbox"):
        p = text.rfind(cmd)
        while p >= 0 and p + len(cmd) < len(text) and text[p + len(cmd)].isascii() and text[p + len(cmd)].isalpha():
            p = text.rfind(cmd, 0, p + len(cmd) - 1) if p > 0 else -1
        if p >= 0 and p > best:
            best, best_len = p, len(cmd)
    return best, best_len


def last_boxed(text):
    """(content or None, unclosed)."""
    p, name_len = _rfind_box(text)
    if p < 0:
        return None, False
    i = p + name_len
    while i < len(text) and text[i] in SPACE:
        i += 1
    if i < len(text) and text[i] == "{":
        depth, j = 0, i
        while j < len(text):
            if text[j] == "\\" and j + 1 < len(text):
                j += 2
                continue
            if text[j] == "{":
                depth += 1
            if text[j] == "}":
                depth -= 1
                if depth == 0:
                    return text[i + 1:j].strip(SPACE), False
            j += 1
        return None, True
    if i == p + name_len:
        return None, False
    j = i
    while j < len(text) and text[j] not in SPACE and text[j] != "$":
        j += 1
    return (text[i:j] if j > i else None), False


def _clean_phrase(tail):
    tail = tail.lstrip(SPACE + ":")
    tail = tail.split("\n", 1)[0]
    end = tail.find(". ")
    if end >= 0:
        tail = tail[:end]
    tail = tail.strip(SPACE).rstrip(".!").strip(SPACE)
    if len(tail) > MAX_PHRASE_CHARS:
        return ""
    m = re.match(r"[-$]?[0-9,./]*", tail)
    i = m.end()
    digits_start = 1 if tail[:1] in ("-", "$") else 0
    if i < len(tail) and tail[i] == "%":
        i += 1
    if i > digits_start and i < len(tail) and tail[i] in SPACE and re.fullmatch(r"[A-Za-z \t\n\r\f\v'\-]*", tail[i:]):
        return tail[:i]
    return tail



def last_number(text):
    last, i, n = None, 0, len(text)
    while i < n:
        if not text[i].isdigit() or not text[i].isascii() or (i > 0 and (text[i - 1].isdigit() or text[i - 1] == ".")):
            i += 1
            continue
        start = i
        if i > 0 and text[i - 1] == "-":
            before = text[i - 2] if i > 1 else " "
            if not (before.isdigit() or (before.isascii() and before.isalpha()) or before in ")]"):
                start = i - 1
        j = i
        while j < n and "0" <= text[j] <= "9":
            j += 1
        if j - i <= 3:
            while (j + 3 < n and text[j] == "," and all("0" <= c <= "9" for c in text[j + 1:j + 4])
                   and (j + 4 >= n or not "0" <= text[j + 4] <= "9")):
                j += 4
        for sep in ".", "/":
            if j + 1 < n and text[j] == sep and "0" <= text[j + 1] <= "9":
                j += 1
                while j < n and "0" <= text[j] <= "9":
                    j += 1
        if j < n and text[j] == "%":
            j += 1
        last = text[start:j]
        i = j
    return last


def extract_answer(text):
    boxed, unclosed = last_boxed(text)
    if unclosed:
        return None
    if boxed:
        return boxed
    p = text.lower().rfind("answer is")
    if p >= 0:
        a = _clean_phrase(text[p + 9:])
        if a:
            return a
    p = text.rfind("####")
    if p >= 0:
        a = _clean_phrase(text[p + 4:])
        if a:
            return a
    return last_number(text)


def normalize_answer(a):
    a = a.strip().replace("$", "").replace("\\!", "").replace("\\,", "")
    a = "".join(a.split())
    a = re.sub(r"(?<=\d),(?=\d{3}\b)", "", a)
    a = a.rstrip(".")
    if re.fullmatch(r"-?\d+\.0+", a):
        a = a[:a.index(".")]
    return a.lower()


def _number(a):
    percent = a.endswith("%")
    a = a[:-1] if percent else a
    try:
        if re.fullmatch(r"-?\d+/\d+", a):
            num, den = a.split("/")
            return (float(num) / float(den) if float(den) else None), percent
        return float(a), percent
    except ValueError:
        return None, percent


def answers_equal(gold, predicted, rel_tol=1e-4):
    g, p = normalize_answer(gold), normalize_answer(predicted)
    if not p:
        return False
    if g == p:
        return True
    gv, g_pct = _number(g)
    pv, p_pct = _number(p)
    if gv is None or pv is None:
        return False
    candidates = [pv] + ([pv * 100] if g_pct and not p_pct else [])
    return any(abs(gv - v) <= rel_tol * max(abs(gv), abs(v)) for v in candidates)


def gold_answer(gold):
    p = gold.rfind("####")
    if p >= 0:
        return _clean_phrase(gold[p + 4:])
    if "\\boxed" in gold or "\\fbox" in gold:
        b, _ = last_boxed(gold)
        if b is not None:
            return b
    return gold.strip(SPACE)


def score(prompt, completion, gold):
    if echoes_prompt(prompt, completion):
        return 0.0
    a = extract_answer(completion)
    if a is None or not normalize_answer(a):
        return 0.0
    return 1.0 if answers_equal(gold_answer(gold), a) else 0.0


def math_answer(prompts, completions, question, answer, **kwargs):
    """TRL reward function: the dataset's `question` (the user prompt before the template) and `answer`."""
    return [score(q, c, a) for q, c, a in zip(question, completions, answer)]

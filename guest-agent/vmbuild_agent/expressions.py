"""`{{ ... }}` substitution (parameters, constants, loops, chaining) and conditional expressions."""

from __future__ import annotations

import hashlib
import math
import os
import re
import shutil
from dataclasses import dataclass, field
from typing import Any, Callable

PLACEHOLDER = re.compile(r"{{\s*([^{}]*?)\s*}}")
PHASES = ("build", "validate", "test")
_NAME_ONLY = re.compile(r"^[A-Za-z0-9_\-]+$")
_SEGMENT = re.compile(r"^([A-Za-z0-9_\-]+)((?:\[\d+\])*)$")
MAX_CONDITION_DEPTH = 4

UNARY = {"stringIsEmpty", "stringIsWhitespace", "binaryExists", "fileExists", "folderExists"}
STRING_BINARY = {
    "stringEquals",
    "stringLessThan",
    "stringLessThanEquals",
    "stringGreaterThan",
    "stringGreaterThanEquals",
    "patternMatches",
}
NUMBER_BINARY = {
    "numberEquals",
    "numberLessThan",
    "numberLessThanEquals",
    "numberGreaterThan",
    "numberGreaterThanEquals",
}
FILE_HASH = {
    "fileMD5Equals": "md5",
    "fileSHA1Equals": "sha1",
    "fileSHA256Equals": "sha256",
    "fileSHA512Equals": "sha512",
}
COMPARISONS = UNARY | STRING_BINARY | NUMBER_BINARY | set(FILE_HASH)
LOGICAL = {"and", "or", "not"}


class SubstitutionError(Exception):
    """A `{{ name }}` that cannot be resolved at run time."""


@dataclass(frozen=True)
class Reference:
    """A parsed placeholder: kind is 'variable', 'loop' or 'chain'."""

    kind: str
    text: str
    name: str = ""  # variable or loop name
    phase: str = ""
    step: str = ""
    section: str = ""  # inputs | outputs
    path: tuple = ()  # keys and list indices below the section


def _parse_path(parts: list[str]) -> tuple | None:
    path: list[Any] = []
    for part in parts:
        match = _SEGMENT.match(part)
        if not match:
            return None
        path.append(match.group(1))
        path.extend(int(i) for i in re.findall(r"\[(\d+)\]", match.group(2)))
    return tuple(path)


def parse_reference(text: str, loop_names: tuple = ()) -> Reference | None:
    """Classify a placeholder body; None when it is not well formed."""
    parts = text.split(".")
    if (
        len(parts) == 2
        and parts[1] in ("index", "value")
        and (parts[0] == "loop" or parts[0] in loop_names)
    ):
        return Reference("loop", text, name=parts[0], section=parts[1])
    head = parts[0].split("[")[0]
    section = _parse_path(parts[2:3]) if len(parts) >= 3 else None
    if head in PHASES and section and section[0] in ("inputs", "outputs"):
        # inputs[0].path: list indices may follow the section itself
        path = _parse_path(parts[3:])
        if path is None or not _NAME_ONLY.match(parts[1]) or not (section[1:] or path):
            return None
        return Reference(
            "chain", text, phase=head, step=parts[1], section=section[0], path=section[1:] + path
        )
    if re.fullmatch(r"[A-Za-z0-9_\-:]+", text):
        return Reference("variable", text, name=text)
    return None


def references(value: Any) -> list[str]:
    """Every placeholder body found in strings anywhere inside `value`."""
    found: list[str] = []
    if isinstance(value, str):
        found.extend(m.group(1) for m in PLACEHOLDER.finditer(value))
    elif isinstance(value, dict):
        for item in value.values():
            found.extend(references(item))
    elif isinstance(value, list):
        for item in value:
            found.extend(references(item))
    return found


def has_placeholder(value: Any) -> bool:
    return isinstance(value, str) and PLACEHOLDER.search(value) is not None


@dataclass
class Scope:
    """What placeholders resolve against while a step runs."""

    variables: dict = field(default_factory=dict)
    loops: dict = field(default_factory=dict)  # name -> {"index": i, "value": v}
    steps: dict = field(default_factory=dict)  # "phase.step" -> {"inputs": .., "outputs": ..}

    def child(self, loops: dict) -> Scope:
        return Scope(self.variables, {**self.loops, **loops}, self.steps)

    def resolve(self, text: str) -> Any:
        ref = parse_reference(text, tuple(self.loops))
        if ref is None:
            raise SubstitutionError(f"malformed placeholder {{{{ {text} }}}}")
        if ref.kind == "loop":
            if ref.name not in self.loops:
                raise SubstitutionError(f"{{{{ {text} }}}} is used outside a loop")
            return self.loops[ref.name][ref.section]
        if ref.kind == "variable":
            if ref.name not in self.variables:
                raise SubstitutionError(f"unknown parameter or constant {{{{ {text} }}}}")
            return self.variables[ref.name]
        record = self.steps.get(f"{ref.phase}.{ref.step}")
        if record is None:
            raise SubstitutionError(f"{{{{ {text} }}}}: step {ref.phase}.{ref.step} has not run")
        value = record.get(ref.section)
        for key in ref.path:
            try:
                value = value[key]  # type: ignore[index]
            except (KeyError, IndexError, TypeError):
                raise SubstitutionError(
                    f"{{{{ {text} }}}}: {ref.phase}.{ref.step} has no {ref.section} {key!r}"
                ) from None
        return value


def to_text(value: Any) -> str:
    """How a non-string value reads when embedded in a string."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "\n".join(to_text(v) for v in value)
    return str(value)


def substitute(value: Any, scope: Scope) -> Any:
    """Replace placeholders in every string of `value`.

    A string that is exactly one placeholder takes the referenced value as is (a list of
    files stays a list); placeholders inside longer strings are rendered as text.
    """
    if isinstance(value, str):
        whole = PLACEHOLDER.fullmatch(value.strip()) if "{{" in value else None
        if whole:
            return scope.resolve(whole.group(1))
        return PLACEHOLDER.sub(lambda m: to_text(scope.resolve(m.group(1))), value)
    if isinstance(value, dict):
        out = type(value)() if type(value) is not dict else {}
        if hasattr(value, "line"):
            out.line = value.line  # type: ignore[attr-defined]
        for key, item in value.items():
            out[key] = substitute(item, scope)
        return out
    if isinstance(value, list):
        return [substitute(item, scope) for item in value]
    return value


# --- conditional expressions -------------------------------------------------------------


def check_condition(expr: Any, depth: int = 1) -> list[str]:
    """Structural problems of a conditional expression (empty when it is well formed)."""
    if not isinstance(expr, dict) or not expr:
        return ["a condition must be a mapping with one operator"]
    if depth > MAX_CONDITION_DEPTH:
        return [f"conditions nest at most {MAX_CONDITION_DEPTH} levels deep"]
    operators = [k for k in expr if k in COMPARISONS or k in LOGICAL]
    if len(operators) != 1:
        names = ", ".join(sorted(map(str, expr))) or "nothing"
        return [f"a condition needs exactly one operator, found: {names}"]
    op = operators[0]
    extra = set(expr) - {op, "value", "path"}
    if extra:
        return [f"unknown key(s) {', '.join(sorted(map(str, extra)))} in condition {op}"]
    problems: list[str] = []
    if op in ("and", "or"):
        if not isinstance(expr[op], list) or not expr[op]:
            return [f"'{op}' takes a non-empty list of conditions"]
        for sub in expr[op]:
            problems.extend(check_condition(sub, depth + 1))
    elif op == "not":
        problems.extend(check_condition(expr[op], depth + 1))
    elif op in FILE_HASH:
        if "path" not in expr:
            problems.append(f"{op} needs 'path'")
    elif op in STRING_BINARY or op in NUMBER_BINARY:
        if "value" not in expr:
            problems.append(f"{op} needs 'value'")
        if op == "patternMatches" and not has_placeholder(expr[op]):
            try:
                re.compile(str(expr[op]))
            except re.error as exc:
                problems.append(f"patternMatches: invalid regular expression: {exc}")
    return problems


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def _digest(path: str, algorithm: str) -> str | None:
    try:
        digest = hashlib.new(algorithm)
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()


_STRING_OPS: dict[str, Callable[[str, str], bool]] = {
    "stringEquals": lambda v, b: v == b,
    "stringLessThan": lambda v, b: v < b,
    "stringLessThanEquals": lambda v, b: v <= b,
    "stringGreaterThan": lambda v, b: v > b,
    "stringGreaterThanEquals": lambda v, b: v >= b,
}
_NUMBER_OPS: dict[str, Callable[[float, float], bool]] = {
    "numberEquals": lambda v, b: v == b,
    "numberLessThan": lambda v, b: v < b,
    "numberLessThanEquals": lambda v, b: v <= b,
    "numberGreaterThan": lambda v, b: v > b,
    "numberGreaterThanEquals": lambda v, b: v >= b,
}


def evaluate(expr: dict) -> bool:
    """Evaluate a substituted condition.

    Binary operators compare `value` against the operator's own (baseline) argument:
    `numberLessThan: 10` with `value: 3` is true. String comparisons ignore case.
    """
    op = next(k for k in expr if k in COMPARISONS or k in LOGICAL)
    arg = expr[op]
    if op == "and":
        return all(evaluate(sub) for sub in arg)
    if op == "or":
        return any(evaluate(sub) for sub in arg)
    if op == "not":
        return not evaluate(arg)
    if op == "stringIsEmpty":
        return to_text(arg) == ""
    if op == "stringIsWhitespace":
        text = to_text(arg)
        return text != "" and text.isspace()
    if op == "binaryExists":
        return shutil.which(to_text(arg)) is not None
    if op == "fileExists":
        return os.path.isfile(to_text(arg))
    if op == "folderExists":
        return os.path.isdir(to_text(arg))
    if op in FILE_HASH:
        actual = _digest(to_text(expr["path"]), FILE_HASH[op])
        return actual is not None and actual.lower() == to_text(arg).strip().lower()
    value = expr.get("value")
    if op == "patternMatches":
        return re.search(to_text(arg), to_text(value)) is not None
    if op in _STRING_OPS:
        return _STRING_OPS[op](to_text(value).casefold(), to_text(arg).casefold())
    left, right = _number(value), _number(arg)
    if left is None or right is None:
        return False
    return _NUMBER_OPS[op](left, right)


def describe(expr: dict) -> str:
    """A compact rendering of a condition for failure messages."""
    op = next(k for k in expr if k in COMPARISONS or k in LOGICAL)
    if op in ("and", "or"):
        return f"{op}(" + ", ".join(describe(s) for s in expr[op]) + ")"
    if op == "not":
        return f"not({describe(expr[op])})"
    if op in FILE_HASH:
        return f"{op} {expr[op]!r} path={expr.get('path')!r}"
    if "value" in expr:
        return f"{op} {expr[op]!r} value={expr['value']!r}"
    return f"{op} {expr[op]!r}"

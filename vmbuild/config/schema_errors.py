"""JSON Schema validation whose findings name the line and the field, in plain words.

jsonschema's own messages (`'x' is not valid under any of the given schemas`) are
rewritten per keyword; unknown keys get a "did you mean" from the allowed ones.
"""

from __future__ import annotations

import difflib
from typing import Any

import jsonschema
from jsonschema.exceptions import ValidationError, best_match

from vmbuild.config.problems import Problems
from vmbuild.config.yamlpos import JsonPath, Positions

_TYPE_WORDS = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "object": "a mapping",
    "array": "a list",
    "null": "empty",
}


def describe(value: Any) -> str:
    """`'x' (a string)`, `1.0 (a number)`: how a wrong value is shown."""
    kind = {
        bool: "true/false",
        int: "an integer",
        float: "a number",
        str: "a string",
        dict: "a mapping",
        list: "a list",
        type(None): "empty",
    }.get(type(value), type(value).__name__)
    shown = repr(value) if not isinstance(value, dict | list) else kind
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return shown if shown == kind else f"{shown} ({kind})"


def did_you_mean(word: str, choices: list[str]) -> str:
    match = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def _allowed_keys(schema: dict[str, Any]) -> list[str]:
    return sorted(schema.get("properties", {}))


def _one_of_words(error: ValidationError) -> str | None:
    """Alternatives that each require one key read as 'exactly one of a, b, c'."""
    alternatives = error.validator_value
    keys = [a.get("required", [None])[0] for a in alternatives if isinstance(a, dict)]
    if not keys or None in keys or not isinstance(error.instance, dict):
        return None
    given = [k for k in keys if k in error.instance]
    found = f"; found {', '.join(given)}" if given else "; found none"
    return f"needs exactly one of {', '.join(keys)}{found}"


def _closest_alternative(error: ValidationError) -> list[ValidationError]:
    """The errors of the one alternative of a oneOf/anyOf that fits the value's shape.

    An alternative failing on `type`, `enum` or `const` at the value itself does not fit
    (a mapping given where the choices are a string or an object); when exactly one
    alternative fits, its own errors are the useful ones.
    """
    by_alternative: dict[Any, list[ValidationError]] = {}
    for sub in error.context or []:
        by_alternative.setdefault(sub.schema_path[0], []).append(sub)
    fitting = [
        subs
        for subs in by_alternative.values()
        if not any(s.validator in ("type", "enum", "const") and not s.relative_path for s in subs)
    ]
    if len(fitting) == 1:
        return fitting[0]
    return [best_match(error.context or [])]


def add_schema_problems(
    data: Any,
    schema: dict[str, Any] | jsonschema.protocols.Validator,
    positions: Positions,
    problems: Problems,
    *,
    pattern_words: dict[str, str] | None = None,
) -> set[JsonPath]:
    """Validate `data` (against a schema or a ready validator); add one problem per finding.

    Returns the paths found invalid.

    `pattern_words` maps a schema pattern to what it means ("must be a semantic version").
    """
    validator = jsonschema.Draft202012Validator(schema) if isinstance(schema, dict) else schema
    bad: set[JsonPath] = set()
    for error in validator.iter_errors(data):
        _add(error, positions, problems, bad, pattern_words or {})
    return bad


def _add(
    error: ValidationError,
    positions: Positions,
    problems: Problems,
    bad: set[JsonPath],
    words: dict[str, str],
) -> None:
    path: JsonPath = tuple(error.absolute_path)
    keyword = error.validator
    value = error.validator_value
    instance = error.instance
    if keyword == "additionalProperties" and isinstance(instance, dict):
        allowed = _allowed_keys(error.schema)
        for key in instance:
            if key not in allowed:
                bad.add((*path, key))
                hint = did_you_mean(key, allowed)
                if not hint:
                    hint = f" (allowed: {', '.join(allowed)})" if allowed else ""
                problems.add(positions.line((*path, key)), (*path, key), "unknown field" + hint)
        return
    if keyword in ("oneOf", "anyOf"):
        summary = _one_of_words(error) if keyword == "oneOf" else None
        if summary:
            bad.add(path)
            problems.add(positions.line(path), path, summary)
            return
        if error.context:
            for sub in _closest_alternative(error):
                _add(sub, positions, problems, bad, words)
            return
    line = positions.line(path)
    if keyword == "required":
        missing = [k for k in value if isinstance(instance, dict) and k not in instance]
        for key in missing:
            problems.add(line, (*path, key), "required field is missing")
        return
    if keyword == "dependentRequired":
        for key, needs in value.items():
            if key in instance:
                for need in needs:
                    if need not in instance:
                        problems.add(line, (*path, need), f"required with {key!r}")
        return
    bad.add(path)
    problems.add(line, path, _message(error, words))


def _message(error: ValidationError, words: dict[str, str]) -> str:
    keyword, value, instance = error.validator, error.validator_value, error.instance
    if keyword == "type":
        types = [value] if isinstance(value, str) else list(value)
        names = [_TYPE_WORDS.get(t, t) for t in types]
        expected = ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]
        message = f"must be {expected}, got {describe(instance)}"
        if (
            "string" in types
            and isinstance(instance, int | float)
            and not isinstance(instance, bool)
        ):
            message += " (put it in quotes)"
        return message
    if keyword == "enum":
        choices = [str(c) for c in value]
        hint = did_you_mean(str(instance), choices) if isinstance(instance, str) else ""
        return f"must be one of {', '.join(choices)}, got {describe(instance)}{hint}"
    if keyword == "const":
        return f"must be {value!r}, got {describe(instance)}"
    if keyword == "pattern":
        meaning = words.get(value, f"must match {value}")
        return f"{meaning}, got {describe(instance)}"
    if keyword == "minimum":
        return f"must be at least {value}, got {instance}"
    if keyword == "maximum":
        return f"must be at most {value}, got {instance}"
    if keyword == "exclusiveMinimum":
        return f"must be more than {value}, got {instance}"
    if keyword == "minLength":
        return "must not be empty" if value == 1 else f"must be at least {value} characters"
    if keyword == "maxLength":
        return f"must be at most {value} characters"
    if keyword == "minItems":
        return "must not be empty" if value == 1 else f"needs at least {value} items"
    if keyword == "uniqueItems":
        return "must not repeat items"
    return error.message

"""Problems found in a user document, each naming the file, the line and the field.

Checks collect every problem they find into a `Problems` list, so the user sees
all of them at once; `raise_if_any()` turns them into one `RecipeError`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from vmbuild.config.yamlpos import JsonPath
from vmbuild.errors import InputError


def field_name(path: JsonPath) -> str:
    """`("vm", "memory")` -> `vm.memory`; `("components", 1, "path")` -> `components[1].path`."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


@dataclass(frozen=True)
class Problem:
    """One finding: `file:line: field: message`."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return (
            f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class RecipeError(InputError):
    """A recipe (or a document it names) is invalid; `problems` lists every finding."""

    def __init__(self, file: str, problems: list[Problem], *, hint: str | None = None) -> None:
        count = len(problems)
        head = f"{file}: {count} problem{'s' if count != 1 else ''}"
        super().__init__("\n".join([head, *(f"  {p}" for p in problems)]), hint=hint)
        self.file = file
        self.problems = problems


class Problems(list[Problem]):
    """A list of problems for one file; `add()` finds the line from positions."""

    def __init__(self, file: str) -> None:
        super().__init__()
        self.file = file

    def add(self, line: int | None, path: JsonPath | str, message: str) -> None:
        name = path if isinstance(path, str) else field_name(path)
        problem = Problem(self.file, line, name, message)
        if problem not in self:
            self.append(problem)

    def raise_if_any(self, hint: str | None = None) -> None:
        if self:
            ordered = sorted(self, key=lambda p: (p.line or 0, p.field))
            raise RecipeError(self.file, ordered, hint=hint)

"""`vmbuild validate` and `vmbuild schema` through the real CLI entry point."""

from __future__ import annotations

import json

from tests.unit.config.conftest import GOOD
from vmbuild.cli import main
from vmbuild.config.schema import recipe_schema


def test_validate_ok(write_recipe, capsys):
    path = write_recipe(GOOD)
    assert main(["validate", "--no-components", str(path)]) == 0
    assert capsys.readouterr().out == f"{path}: ok\n"


def test_validate_reports_every_recipe(write_recipe, capsys):
    good = write_recipe(GOOD, "good.yml")
    bad = write_recipe(GOOD.replace("memory: 2G", "memory: 2"), "bad.yml")
    assert main(["validate", "--no-components", str(good), str(bad)]) == 2
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{good}: ok"
    assert out[1] == f"{bad}:10: vm.memory: must be at least 256 (MiB), got 2"


def test_validate_missing_file(tmp_path, capsys):
    assert main(["validate", str(tmp_path / "none.yml")]) == 2
    assert "recipe not found" in capsys.readouterr().out


def test_validate_json_report(write_recipe, capsys):
    good = write_recipe(GOOD, "good.yml")
    bad = write_recipe(GOOD + "vmm: 1\n", "bad.yml")
    assert main(["validate", "--json", "--no-components", str(good), str(bad)]) == 2
    report = json.loads(capsys.readouterr().out)
    assert report["valid"] is False
    assert [r["valid"] for r in report["recipes"]] == [True, False]
    (problem,) = report["recipes"][1]["problems"]
    assert problem == {
        "file": str(bad),
        "line": 11,
        "field": "vmm",
        "message": "unknown field (did you mean 'vm'?)",
    }


def test_global_json_flag_works_too(write_recipe, capsys):
    assert main(["--json", "validate", "--no-components", str(write_recipe(GOOD))]) == 0
    assert json.loads(capsys.readouterr().out)["valid"] is True


def test_schema_verb_prints_the_schema(capsys):
    assert main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out) == recipe_schema()


def test_schema_markdown_lists_every_field(capsys):
    assert main(["schema", "--markdown"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[0] == "| Field | Type | Default | Description |"
    fields = [row.split("|")[1].strip(" `") for row in rows[2:]]
    for name in ("name", "parent.url", "components[].parameters", "vm.memory", "sanitize.tmp"):
        assert name in fields
    (memory,) = [row for row in rows if row.startswith("| `vm.memory` |")]
    assert "| `2048` |" in memory
    assert "| (required) |" in rows[2]

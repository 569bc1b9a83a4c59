"""Bad recipes: each problem names the file, the line and the field; all are reported at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.config.conftest import GOOD
from vmbuild.config import RecipeError, load_recipe
from vmbuild.errors import InputError

HEAD = "name: demo\nversion: 1.0.0\nparent:\n  path: base.qcow2\n"  # lines 1-4

# (recipe text, line, field, words expected in the message)
BAD = [
    ("nmae: demo\nversion: 1.0.0\nparent: {path: base.qcow2}\n", 1, "nmae", "did you mean 'name'"),
    ("version: 1.0.0\nparent: {path: base.qcow2}\n", 1, "name", "required field is missing"),
    ("name: Demo_1\nversion: 1.0.0\nparent: {path: base.qcow2}\n", 1, "name", "lowercase"),
    ("name: demo\nversion: 1.0\nparent: {path: base.qcow2}\n", 2, "version", "put it in quotes"),
    ("name: demo\nversion: '1.0'\nparent: {path: base.qcow2}\n", 2, "version", "semantic version"),
    (HEAD + "vm:\n  memory: 128\n", 6, "vm.memory", "must be at least 256 (MiB), got 128"),
    (HEAD + "vm:\n  memory: 1.5\n", 6, "vm.memory", "must be an integer or a string"),
    (HEAD + "vm:\n  memory: 100M\n", 6, "vm.memory", "at least 256 (MiB)"),
    (HEAD + "vm:\n  memory: lots\n", 6, "vm.memory", "not a size"),
    (HEAD + "vm:\n  cpus: 2\n  memroy: 2048\n", 7, "vm.memroy", "did you mean 'memory'"),
    (HEAD + "vm:\n  cpus: 0\n", 6, "vm.cpus", "must be at least 1"),
    (HEAD + "vm:\n  firmware: efi\n", 6, "vm.firmware", "must be one of bios, uefi"),
    (HEAD + "vm:\n  machine: q53\n", 6, "vm.machine", "did you mean 'q35'"),
    (HEAD + "vm:\n  accelerator: hvf\n", 6, "vm.accelerator", "auto, kvm, tcg"),
    (HEAD + "vm:\n  disk_size: 8X\n", 6, "vm.disk_size", "not a size"),
    (HEAD + "vm:\n  disk_size: 1024\n", 6, "vm.disk_size", "at least 64M"),
    (HEAD + "vm:\n  uri: system\n", 6, "vm.uri", "not a libvirt URI"),
    (HEAD + "vm:\n  network: {mode: user, name: br0}\n", 6, "vm.network.name", "mode: libvirt"),
    (HEAD + "vm:\n  network: {mode: bridge}\n", 6, "vm.network.mode", "user, libvirt"),
    (HEAD + "vm: 4\n", 5, "vm", "must be a mapping"),
    (
        "name: demo\nversion: 1.0.0\nparent:\n  path: base.qcow2\n  bootstrap: b.yml\n",
        3,
        "parent",
        "exactly one of path, url, bootstrap, build; found path, bootstrap",
    ),
    ("name: demo\nversion: 1.0.0\nparent: {}\n", 3, "parent", "found none"),
    (
        "name: demo\nversion: 1.0.0\nparent:\n  url: https://127.0.0.1/x.qcow2\n",
        3,
        "parent.sha256",
        "required with 'url'",
    ),
    (
        "name: demo\nversion: 1.0.0\nparent:\n  url: ftp://h/x\n  sha256: " + "a" * 64 + "\n",
        4,
        "parent.url",
        "http://, https:// or file://",
    ),
    (
        "name: demo\nversion: 1.0.0\nparent:\n  url: file:///x\n  sha256: abc\n",
        5,
        "parent.sha256",
        "64 hex digits",
    ),
    ("name: demo\nversion: 1.0.0\nparent:\n  path: missing.qcow2\n", 4, "parent.path", "no such"),
    ("name: demo\nversion: 1.0.0\nparent:\n  bootstrap: nope.yml\n", 4, "parent.bootstrap", "no"),
    ("name: demo\nversion: 1.0.0\nparent:\n  build: .\n", 4, "parent.build", "no manifest.json"),
    ("name: demo\nversion: 1.0.0\nparent:\n  path: .\n", 4, "parent.path", "is a folder"),
    (
        "name: demo\nversion: 1.0.0\nparent:\n  url: file:///nonexistent/x.qcow2\n"
        "  sha256: " + "a" * 64 + "\n",
        4,
        "parent.url",
        "no such file",
    ),
    (HEAD + "components:\n  - path: gone.yml\n", 6, "components[0].path", "no such file"),
    (HEAD + "components:\n  - parameters: {a: b}\n", 6, "components[0].path", "required"),
    (
        HEAD + "components:\n  - path: hello.yml\n    parameters: {a: [1]}\n",
        7,
        "components[0].parameters.a",
        "must be a string, a number or true or false",
    ),
    (
        HEAD + "components:\n  - path: hello.yml\n  - path: ./hello.yml\n",
        7,
        "components[1]",
        "same document and parameters as components[0]",
    ),
    (HEAD + "components:\n  - hello.yml\n", 6, "components[0]", "must be a mapping"),
    (
        HEAD + "components:\n  - path: hello.yml\n    parameters: [a]\n",
        7,
        "components[0].parameters",
        "must be a mapping",
    ),
    (HEAD + "timeouts:\n  boot: ten minutes\n", 6, "timeouts.boot", "not a duration"),
    (HEAD + "timeouts:\n  ssh: 0\n", 6, "timeouts.ssh", "more than 0 seconds"),
    (HEAD + "timeouts:\n  reboot: 60\n", 6, "timeouts.reboot", "unknown field"),
    (HEAD + "sanitize:\n  extra_paths: [/etc/]\n", 6, "sanitize.extra_paths[0]", "refusing"),
    (HEAD + "sanitize:\n  extra_paths: [opt/x]\n", 6, "sanitize.extra_paths[0]", "absolute"),
    (HEAD + "sanitize:\n  logs: maybe\n", 6, "sanitize.logs", "must be true or false"),
    (HEAD + "snapshot:\n  compression: zst\n", 6, "snapshot.compression", "did you mean 'zstd'"),
    (HEAD + "test:\n  timeout: soon\n", 6, "test.timeout", "not a duration"),
    (HEAD + "warm: yes please\n", 5, "warm", "must be true or false"),
    (HEAD + "user_data: [a]\n", 5, "user_data", "must be a mapping"),
    (HEAD + "workdir: base.qcow2\n", 5, "workdir", "not a folder"),
    (HEAD + "name: again\n", 5, "name", "duplicate key (first at line 1)"),
    (
        HEAD + "distribute:\n  - {type: directory, name: a, path: /tmp/x}\n"
        "  - {type: directory, name: a, path: /tmp/y}\n",
        7,
        "distribute[1].name",
        "duplicate name 'a'",
    ),
    (HEAD + "distribute:\n  - {name: a}\n", 6, "distribute[0].type", "required"),
    (HEAD + "distribute:\n  - name: a\n    type: ftp\n", 7, "distribute[0].type", "must be one of"),
    (HEAD + "output:\n  colour: red\n", 6, "output.colour", "unknown field"),
    (HEAD + "output:\n  formats:\n    - qcow3\n", 7, "output.formats[0]", "did you mean 'qcow2'"),
    (
        HEAD + "output:\n  formats:\n    - qcow2\n    - {format: vmdk, colour: 1}\n",
        8,
        "output.formats[1].colour",
        "unknown field",
    ),
]


@pytest.mark.parametrize(("text", "line", "field", "words"), BAD)
def test_bad_recipe_names_file_line_and_field(write_recipe, text, line, field, words):
    path = write_recipe(text)
    with pytest.raises(RecipeError) as info:
        load_recipe(path, check_components=False)
    assert info.value.exit_code == 2
    lines = [str(p) for p in info.value.problems]
    prefix = f"{path}:{line}: {field}: "
    matching = [p for p in lines if p.startswith(prefix)]
    assert matching, f"no problem starting {prefix!r} in {lines}"
    assert any(words in p for p in matching), matching
    assert prefix in str(info.value)


def test_every_problem_reported_at_once(write_recipe):
    path = write_recipe(
        """\
        name: Bad Name
        version: 1.0.0
        parent:
          path: base.qcow2
        vm:
          memory: 64
          firmwear: uefi
        snapshot: {compression: lzma}
        """
    )
    with pytest.raises(RecipeError) as info:
        load_recipe(path, check_components=False)
    fields = [(p.line, p.field) for p in info.value.problems]
    assert fields == [
        (1, "name"),
        (6, "vm.memory"),
        (7, "vm.firmwear"),
        (8, "snapshot.compression"),
    ]
    assert str(info.value).startswith(f"{path}: 4 problems")


def test_yaml_syntax_error_names_line(write_recipe):
    path = write_recipe("name: demo\nversion: 1.0.0\nparent: {path: base.qcow2\nvm: {}\n")
    with pytest.raises(RecipeError) as info:
        load_recipe(path, check_components=False)
    (problem,) = info.value.problems
    assert problem.line == 4
    assert "YAML syntax error" in problem.message


@pytest.mark.parametrize(
    ("text", "words"),
    [("", "the file is empty"), ("- a\n- b\n", "top level must be a mapping")],
)
def test_not_a_mapping(write_recipe, text, words):
    with pytest.raises(RecipeError, match=words):
        load_recipe(write_recipe(text), check_components=False)


def test_missing_file_is_input_error(tmp_path: Path):
    with pytest.raises(InputError, match="recipe not found") as info:
        load_recipe(tmp_path / "nope.yml")
    assert info.value.exit_code == 2


def test_good_recipe_resolves_paths_and_units(write_recipe, recipe_dir):
    path = write_recipe(
        GOOD
        + "  disk_size: 8G\n  network: {mode: libvirt}\n"
        + "timeouts: {boot: 10m, ssh: 90s, cloud_init: 1h30m}\n"
    )
    recipe = load_recipe(path, check_components=False)
    assert recipe.parent.path == recipe_dir / "base.qcow2"
    assert recipe.parent.kind == "path"
    assert recipe.components[0].path == recipe_dir / "hello.yml"
    assert recipe.components[0].parameters == {"greeting": "hi"}
    assert recipe.components[0].origin is not None
    assert (recipe.components[0].origin.line, recipe.components[0].origin.field) == (
        6,
        "components[0]",
    )
    assert recipe.vm.memory == 2048
    assert recipe.vm.disk_size == 8 * 1024**3
    assert recipe.vm.network.name == "default"
    assert (recipe.timeouts.boot, recipe.timeouts.ssh, recipe.timeouts.cloud_init) == (
        600,
        90,
        5400,
    )
    assert recipe.workdir == recipe_dir / "work"
    assert recipe.path == path


def test_unset_timeouts_scale(write_recipe):
    recipe = load_recipe(write_recipe(GOOD + "timeouts: {ssh: 45}\n"), check_components=False)
    resolved = recipe.timeouts.resolved(scale=3)
    assert resolved["ssh"] == 45
    assert resolved["boot"] == 3 * recipe.timeouts.DEFAULTS["boot"]


def test_parameters_become_strings(write_recipe):
    text = HEAD + "components:\n  - path: hello.yml\n    parameters: {port: 8080, on: true}\n"
    recipe = load_recipe(write_recipe(text), check_components=False)
    assert recipe.components[0].parameters == {"port": "8080", "on": "true"}


def test_merge_keys_and_anchors(write_recipe):
    text = HEAD + "vm: &vm\n  cpus: 3\nx_unused: 1\n"
    with pytest.raises(RecipeError, match="x_unused: unknown field"):
        load_recipe(write_recipe(text), check_components=False)
    text = HEAD + "sanitize: &s {logs: false}\ntest:\n  <<: {enabled: false}\n  timeout: 60\n"
    recipe = load_recipe(write_recipe(text), check_components=False)
    assert recipe.test.enabled is False
    assert recipe.test.timeout == 60


def test_output_checked_by_formats_module(write_recipe):
    text = HEAD + "output:\n  formats:\n    - qcow2\n    - {format: raw, compression: zstd}\n"
    with pytest.raises(RecipeError) as info:
        load_recipe(write_recipe(text), check_components=False)
    (problem,) = info.value.problems
    assert (problem.line, problem.field) == (8, "output.formats[1].compression")
    assert "only qcow2" in problem.message


def test_bootstrap_definition_checked(write_recipe, recipe_dir):
    (recipe_dir / "base.yml").write_text("name: base\ndistribution: plan9\n")
    text = "name: demo\nversion: 1.0.0\nparent:\n  bootstrap: base.yml\n"
    with pytest.raises(RecipeError) as info:
        load_recipe(write_recipe(text), check_components=False)
    (problem,) = info.value.problems
    assert (problem.line, problem.field) == (4, "parent.bootstrap")
    assert "invalid base-image definition" in problem.message
    assert "base.yml" in problem.message

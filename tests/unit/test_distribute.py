"""Distribution of a build folder: targets, --to, --dry-run, manifest records, CLI, errors."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from vmbuild import cli, stores
from vmbuild.distribute import distribute, load_build
from vmbuild.errors import InputError
from vmbuild.stores.base import Store


def set_targets(build: Path, targets: list[dict]) -> None:
    manifest = json.loads((build / "manifest.json").read_text())
    manifest["recipe"]["distribute"] = targets
    (build / "manifest.json").write_text(json.dumps(manifest))


def test_distribute_records_results(tmp_path: Path, fresh_build: Path):
    targets = [
        {"name": "a", "type": "directory", "path": str(tmp_path / "a")},
        {"name": "b", "type": "directory", "path": str(tmp_path / "b"), "formats": ["vmdk"]},
    ]
    set_targets(fresh_build, targets)
    results = distribute(fresh_build)
    assert [r["store"] for r in results] == ["a", "b"]
    assert len(results[0]["objects"]) == 3 and results[1]["objects"][0]["formats"] == ["vmdk"]
    assert (tmp_path / "b" / "demo-1.2.3.vmdk").is_file()
    assert not (tmp_path / "b" / "demo-1.2.3.raw").exists()
    manifest = json.loads((fresh_build / "manifest.json").read_text())
    assert [d["store"] for d in manifest["distributions"]] == ["a", "b"]
    # --to one store, again: found identical, skipped, recorded once more.
    again = distribute(fresh_build, only=["b"])
    assert again[0]["skipped"]
    manifest = json.loads((fresh_build / "manifest.json").read_text())
    assert [d["store"] for d in manifest["distributions"]] == ["a", "b", "b"]


def test_dry_run_touches_nothing(tmp_path: Path, fresh_build: Path):
    before = (fresh_build / "manifest.json").read_text()
    targets = [{"name": "d", "type": "directory", "path": str(tmp_path / "d"), "prefix": "{name}/"}]
    (plan,) = distribute(fresh_build, targets, dry_run=True)
    assert plan["dry_run"] and {o["url"] for o in plan["objects"]} == {
        str(tmp_path / "d" / "demo" / f)
        for f in ("demo-1.2.3.qcow2", "demo-1.2.3.raw", "demo-1.2.3.vmdk")
    }
    assert not (tmp_path / "d").exists()
    assert (fresh_build / "manifest.json").read_text() == before


@pytest.mark.parametrize(
    ("targets", "only", "fragment"),
    [
        ([{"name": "x", "type": "ftp"}], None, "distribute[0] (name: x): type: unknown store type"),
        ([{"name": "x", "type": "s3"}], None, "distribute[0] (name: x): bucket: missing"),
        (
            [{"name": "x", "type": "s3", "bucket": "b", "acl": "public"}],
            None,
            "distribute[0] (name: x): acl: unknown field",
        ),
        (
            [{"name": "x", "type": "directory", "path": "/tmp"}] * 2,
            None,
            "distribute[1] (name: x): name: 'x' is used twice",
        ),
        ([{"name": "x", "type": "directory", "path": "/t"}], ["y"], "no store named 'y'"),
        (
            [{"name": "x", "type": "directory", "path": "/t", "formats": ["ova"]}],
            None,
            "formats[0]: the build has no ova output",
        ),
        (
            [{"name": "x", "type": "directory", "path": "/t", "prefix": "{nme}/"}],
            None,
            "prefix: bad template '{nme}/'",
        ),
        ([{"name": "p", "type": "libvirt-pool", "pool": "x", "formats": ["vhd"]}], None, "vhd"),
    ],
)
def test_bad_targets(sample_build: Path, targets, only, fragment):
    with pytest.raises(InputError) as exc:
        distribute(sample_build, targets, only=only, dry_run=True)
    assert fragment in str(exc.value)


def test_bad_build_folder(tmp_path: Path, fresh_build: Path):
    with pytest.raises(InputError, match="no manifest"):
        load_build(tmp_path / "nowhere")
    (fresh_build / "outputs" / "demo-1.2.3.raw").write_bytes(b"short")
    with pytest.raises(InputError, match=r"outputs\[1\]: .* the output changed"):
        load_build(fresh_build)


def test_config_schema_matches_load():
    schema = stores.config_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    assert set(stores.registry()) == {"directory", "s3", "sftp", "oci", "libvirt-pool", "ami"}
    good = {"name": "n", "type": "oci", "registry": "localhost:5000", "repository": "a/b"}
    assert validator.is_valid(good)
    assert not validator.is_valid({**good, "bucket": "x"})
    assert not validator.is_valid({"name": "n", "type": "nope"})
    assert not validator.is_valid({"name": "n", "type": "ami", "method": "import-image"})
    for cls in stores.registry().values():
        assert cls.SCHEMA["additionalProperties"] is False
        assert issubclass(cls, Store)


def test_retry_backs_off_then_gives_up(monkeypatch):
    """Store.retry with a function that fails on purpose (no server can fail on cue here)."""
    store = stores.load({"name": "d", "type": "directory", "path": "/tmp", "retries": 2}, "d[0]")
    monkeypatch.setattr(type(store), "BACKOFF", 0.0)
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionResetError("reset")
        return "ok"

    assert store.retry("x", flaky) == "ok" and len(calls) == 3
    calls.clear()

    def down():
        calls.append(1)
        raise ConnectionRefusedError("down")

    with pytest.raises(ConnectionRefusedError):
        store.retry("x", down)
    assert len(calls) == 3  # the first try and two retries
    with pytest.raises(ValueError):  # not transient: no retry
        store.retry("x", lambda: (_ for _ in ()).throw(ValueError("bad")))


def test_cli(tmp_path: Path, fresh_build: Path, capsys):
    config = tmp_path / "targets.yml"
    config.write_text(
        f"distribute:\n  - name: out\n    type: directory\n    path: {tmp_path / 'o'}\n"
    )
    assert cli.main(["distribute", str(fresh_build), "--config", str(config), "--dry-run"]) == 0
    assert "would upload" in capsys.readouterr().out
    assert not (tmp_path / "o").exists()
    code = cli.main(["--json", "distribute", str(fresh_build), "--config", str(config)])
    assert code == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[-1]["kind"] == "distributions" and lines[-1]["data"][0]["verified"]
    assert any(e.get("kind") == "progress" for e in lines[:-1])
    assert (tmp_path / "o" / "demo-1.2.3.qcow2").is_file()
    bad = tmp_path / "bad.yml"
    bad.write_text("- name: x\n  type: s3\n")
    assert cli.main(["distribute", str(fresh_build), "--config", str(bad)]) == 2
    assert "bucket: missing" in capsys.readouterr().err

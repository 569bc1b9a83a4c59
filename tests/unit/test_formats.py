"""Output formats: every format is produced by qemu-img and read back against the source."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from xml.etree import ElementTree

import jsonschema
import pytest

from vmbuild import disk, formats
from vmbuild.errors import CommandError, InputError
from vmbuild.fsutil import sha256_file

ALL = [
    {"format": "qcow2", "compression": "zstd"},
    "raw",
    "vmdk",
    "vhd",
    "vhdx",
    {"format": "ova", "cpus": 4, "memory_mib": 4096},
]


def test_every_format_reads_back(tmp_path: Path, sample_image: Path):
    outputs = formats.produce(sample_image, tmp_path / "out", "demo-1.0", ALL, threads=2)
    assert [o["format"] for o in outputs] == ["qcow2", "raw", "vmdk", "vhd", "vhdx", "ova"]
    for out in outputs:
        path = Path(out["path"])
        assert path.name == f"demo-1.0.{out['format']}"
        assert out["sha256"] == sha256_file(path)
        assert out["size"] == path.stat().st_size
        name = formats.readable_name(path, out["format"])
        info = disk.info(name)
        assert info.format == formats.QEMU_DRIVER[out["format"]]
        assert info.virtual_size == disk.info(sample_image).virtual_size
        assert disk.compare(sample_image, name)
    qcow2 = disk.info(tmp_path / "out" / "demo-1.0.qcow2")
    assert qcow2.compression == "zstd"
    vmdk = disk.info(tmp_path / "out" / "demo-1.0.vmdk").raw["format-specific"]["data"]
    assert vmdk["create-type"] == "streamOptimized"
    # Nothing but the outputs is left in the folder (no temporary files).
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        Path(o["path"]).name for o in outputs
    )


def test_ova_layout(tmp_path: Path, sample_image: Path):
    (out,) = formats.produce(sample_image, tmp_path, "vm-2", [{"format": "ova", "cpus": 3}])
    with tarfile.open(out["path"]) as tar:
        names = tar.getnames()
        ovf = tar.extractfile(names[0]).read().decode()
        mf = tar.extractfile("vm-2.mf").read().decode()
    # OVF first, as the OVF spec requires for an OVA.
    assert names == ["vm-2.ovf", "vm-2-disk1.vmdk", "vm-2.mf"]
    assert "<rasd:VirtualQuantity>3</rasd:VirtualQuantity>" in ovf
    assert 'ovf:href="vm-2-disk1.vmdk"' in ovf
    assert "SHA256(vm-2-disk1.vmdk)=" in mf
    # The descriptor is well-formed and its sizes match the disk it ships with.
    ns = {"ovf": "http://schemas.dmtf.org/ovf/envelope/1"}
    root = ElementTree.fromstring(ovf)
    file_ref = root.find("ovf:References/ovf:File", ns)
    disk_ref = root.find("ovf:DiskSection/ovf:Disk", ns)
    with tarfile.open(out["path"]) as tar:
        vmdk_size = tar.getmember("vm-2-disk1.vmdk").size
    assert int(file_ref.get(f"{{{ns['ovf']}}}size")) == vmdk_size
    capacity = int(disk_ref.get(f"{{{ns['ovf']}}}capacity"))
    assert capacity == disk.info(sample_image).virtual_size


def test_qcow2_compression_choices(tmp_path: Path, sample_image: Path):
    for comp in ("zlib", "none"):
        (out,) = formats.produce(
            sample_image, tmp_path / comp, "x", [{"format": "qcow2", "compression": comp}]
        )
        assert disk.compare(sample_image, out["path"])
        assert out["compression"] == comp
    assert disk.info(tmp_path / "zlib" / "x.qcow2").compression == "zlib"


def test_failed_conversion_leaves_nothing(tmp_path: Path):
    out = tmp_path / "out"
    with pytest.raises(CommandError):
        formats.produce(tmp_path / "missing.qcow2", out, "x", ["raw"])
    assert list(out.iterdir()) == []


@pytest.mark.parametrize(
    ("items", "fragment"),
    [
        (["qcow3"], "output.formats[0]: unknown format 'qcow3'"),
        (["raw", {"format": "raw"}], "output.formats[1]: format 'raw' is listed twice"),
        ([{"format": "vmdk", "compression": "zstd"}], "output.formats[0].compression"),
        ([{"format": "qcow2", "compression": "lz4"}], "output.formats[0].compression"),
        ([{"format": "raw", "cpus": 2}], "output.formats[0].cpus"),
        ([{"format": "qcow2", "level": 9}], "unknown field 'level'"),
    ],
)
def test_bad_formats_name_the_item(items, fragment):
    with pytest.raises(InputError) as exc:
        formats.parse_formats(items)
    assert fragment in str(exc.value)


def test_output_schema():
    validator = jsonschema.Draft202012Validator(formats.OUTPUT_SCHEMA)
    jsonschema.Draft202012Validator.check_schema(formats.OUTPUT_SCHEMA)
    assert validator.is_valid({"formats": ALL, "threads": 4})
    assert not validator.is_valid({"formats": ["iso"]})
    assert not validator.is_valid({"formats": ["raw"], "extra": 1})
    json.dumps(formats.OUTPUT_SCHEMA)


def test_zstd_qcow2_source_is_linked_not_converted(tmp_path: Path, sample_image: Path):
    zstd = tmp_path / "image.qcow2"
    disk.convert(sample_image, zstd, "qcow2", options={"compression_type": "zstd"}, compress=True)
    out = formats.produce(zstd, tmp_path / "out", "img", ["qcow2"])
    assert out[0]["sha256"] == sha256_file(zstd)
    assert (tmp_path / "out" / "img.qcow2").stat().st_ino == zstd.stat().st_ino
    # zlib asked for: a real conversion, read back against the source.
    zlib = formats.produce(
        zstd, tmp_path / "out2", "img", [{"format": "qcow2", "compression": "zlib"}]
    )
    assert zlib[0]["sha256"] != sha256_file(zstd)
    assert disk.info(tmp_path / "out2" / "img.qcow2").compression == "zlib"
    assert disk.compare(tmp_path / "out2" / "img.qcow2", zstd)

"""Output formats: converting the build's snapshot into qcow2, raw, vmdk, vhd, vhdx and ova.

Every conversion goes through `vmbuild.disk.convert` (qemu-img with parallel
coroutines and out-of-order writes), lands atomically under
`<out_dir>/<basename>.<ext>`, is read back (`qemu-img info` and `qemu-img compare`
against the source) and gets a sha256. The recipe's `output` section follows
`OUTPUT_SCHEMA`; `parse_formats` turns it into `FormatSpec`s.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

from vmbuild import disk, events
from vmbuild.errors import BuildError, InputError
from vmbuild.fsutil import atomic_path, sha256_file

FORMATS = ("qcow2", "raw", "vmdk", "vhd", "vhdx", "ova")
COMPRESSIONS = ("zstd", "zlib", "none")

EXTENSIONS = {f: f for f in FORMATS}
# qemu-img driver per format: vhd is qemu's "vpc"; an ova holds a vmdk.
QEMU_DRIVER = {**EXTENSIONS, "vhd": "vpc", "ova": "vmdk"}

_FORMAT_OBJECT: dict[str, Any] = {
    "type": "object",
    "required": ["format"],
    "additionalProperties": False,
    "properties": {
        "format": {"enum": list(FORMATS)},
        "compression": {"enum": list(COMPRESSIONS), "description": "qcow2 only (default zstd)"},
        "cpus": {"type": "integer", "minimum": 1, "description": "ova only: vCPUs in the OVF"},
        "memory_mib": {"type": "integer", "minimum": 64, "description": "ova only: RAM in MiB"},
    },
}

OUTPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "formats": {
            "type": "array",
            "minItems": 1,
            "items": {"oneOf": [{"enum": list(FORMATS)}, _FORMAT_OBJECT]},
        },
        "threads": {
            "type": "integer",
            "minimum": 1,
            "maximum": 16,
            "description": "qemu-img convert coroutines (-m); default: CPU count, 2 to 8",
        },
    },
}


@dataclass(frozen=True)
class FormatSpec:
    """One requested output: the format and its options."""

    format: str
    compression: str | None = None  # qcow2 only
    cpus: int = 2  # ova only
    memory_mib: int = 2048  # ova only

    @property
    def ext(self) -> str:
        return EXTENSIONS[self.format]

    def qemu_options(self) -> tuple[dict[str, str], bool]:
        """(`-o` options, compress flag) for qemu-img convert."""
        if self.format == "qcow2":
            comp = self.compression or "zstd"
            if comp == "none":
                return {}, False
            return {"compression_type": comp}, True
        if self.format in ("vmdk", "ova"):
            # streamOptimized is the vmdk flavour AWS VM Import and OVF consumers expect.
            return {"subformat": "streamOptimized"}, False
        if self.format == "vhd":
            # force_size keeps the exact virtual size instead of CHS rounding.
            return {"subformat": "dynamic", "force_size": "on"}, False
        if self.format == "vhdx":
            return {"subformat": "dynamic"}, False
        return {}, False

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"format": self.format}
        if self.format == "qcow2":
            out["compression"] = self.compression or "zstd"
        return out


def parse_formats(items: Sequence[Any], where: str = "output.formats") -> list[FormatSpec]:
    """Recipe `output.formats` items (strings or objects) to specs; InputError names the item."""
    specs: list[FormatSpec] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        here = f"{where}[{i}]"
        if isinstance(item, FormatSpec):
            spec = item
        elif isinstance(item, str):
            if item not in FORMATS:
                raise InputError(
                    f"{here}: unknown format {item!r}", hint=f"use one of {', '.join(FORMATS)}"
                )
            spec = FormatSpec(item)
        elif isinstance(item, dict):
            unknown = set(item) - set(_FORMAT_OBJECT["properties"])
            if unknown:
                raise InputError(f"{here}: unknown field {sorted(unknown)[0]!r}")
            fmt = item.get("format")
            if fmt not in FORMATS:
                raise InputError(
                    f"{here}.format: unknown format {fmt!r}",
                    hint=f"use one of {', '.join(FORMATS)}",
                )
            comp = item.get("compression")
            if comp is not None and fmt != "qcow2":
                raise InputError(f"{here}.compression: only qcow2 output is compressed")
            if comp is not None and comp not in COMPRESSIONS:
                raise InputError(
                    f"{here}.compression: unknown compression {comp!r}",
                    hint=f"use one of {', '.join(COMPRESSIONS)}",
                )
            for key in ("cpus", "memory_mib"):
                if key in item and fmt != "ova":
                    raise InputError(f"{here}.{key}: applies only to ova output")
            spec = FormatSpec(
                fmt,
                comp,
                cpus=int(item.get("cpus", 2)),
                memory_mib=int(item.get("memory_mib", 2048)),
            )
        else:
            raise InputError(f"{here}: expected a format name or an object with 'format'")
        if spec.format in seen:
            raise InputError(f"{here}: format {spec.format!r} is listed twice")
        seen.add(spec.format)
        specs.append(spec)
    return specs


def produce(
    image: Path,
    out_dir: Path,
    basename: str,
    formats: Sequence[Any],
    *,
    threads: int | None = None,
    image_sha256: str | None = None,
) -> list[dict[str, Any]]:
    """Convert `image` into every requested format under `out_dir`.

    Returns one dict per output: format, path, sha256, size (plus the options used).
    An output that is the image itself, linked, takes `image_sha256` when given.
    Each output is read back and compared with the source before it is reported;
    a failed conversion leaves no file under the final name.
    """
    specs = parse_formats(formats)
    out_dir.mkdir(parents=True, exist_ok=True)
    source = disk.info(image)
    results = []
    for n, spec in enumerate(specs, 1):
        dest = out_dir / f"{basename}.{spec.ext}"
        if _is_already(source, spec):
            events.info(f"{dest.name}: the image already is this output; linking it")
            _link_or_copy(image, dest)
            results.append(_describe(spec, dest, image_sha256))
            continue
        events.info(f"converting to {spec.format}: {dest.name}")
        with atomic_path(dest) as tmp:
            if spec.format == "ova":
                _write_ova(image, tmp, basename, spec, threads)
            else:
                options, compress = spec.qemu_options()
                disk.convert(
                    image,
                    tmp,
                    QEMU_DRIVER[spec.format],
                    options=options,
                    compress=compress,
                    threads=threads,
                )
            verify_output(tmp, spec.format, image, compression=spec.compression)
        results.append(_describe(spec, dest))
        events.progress(n, len(specs), unit="formats", label="output formats")
    return results


def _describe(spec: FormatSpec, dest: Path, sha256: str | None = None) -> dict[str, Any]:
    return {**spec.describe(), "path": str(dest), "sha256": sha256 or sha256_file(dest),
            "size": dest.stat().st_size}  # fmt: skip


def _is_already(source: disk.ImageInfo, spec: FormatSpec) -> bool:
    """A standalone zstd qcow2 needs no conversion into a zstd qcow2 output.

    Only zstd can be told from the header: qemu-img reports zlib for any qcow2 whose
    clusters may or may not be compressed.
    """
    return (
        spec.format == "qcow2"
        and (spec.compression or "zstd") == "zstd"
        and source.format == "qcow2"
        and source.compression == "zstd"
        and source.backing_file is None
    )


def _link_or_copy(image: Path, dest: Path) -> None:
    """Hard-link `image` as `dest` (same file system), else copy it atomically."""
    dest.unlink(missing_ok=True)
    try:
        os.link(image, dest)
    except OSError:
        with atomic_path(dest) as tmp:
            shutil.copyfile(image, tmp)


def readable_name(path: Path, fmt: str) -> str:
    """A name qemu-img can open: the file itself, or for ova the vmdk inside the tar."""
    if fmt != "ova":
        return str(path)
    with tarfile.open(path) as tar:
        member = next((m for m in tar.getmembers() if m.name.endswith(".vmdk")), None)
        if member is None:
            raise BuildError(f"{path}: no .vmdk inside the ova")
        spec = {
            "driver": "vmdk",
            "file": {
                "driver": "raw",
                "offset": member.offset_data,
                "size": member.size,
                "file": {"driver": "file", "filename": str(path.resolve())},
            },
        }
    return "json:" + json.dumps(spec)


def verify_output(path: Path, fmt: str, source: Path, *, compression: str | None = None) -> None:
    """Read an output back: the format qemu-img sees, then its content against the source."""
    name = readable_name(path, fmt)
    found = disk.info(name)
    expected = QEMU_DRIVER[fmt]
    if found.format != expected:
        raise BuildError(f"{path.name}: qemu-img reads it as {found.format}, expected {expected}")
    if fmt == "qcow2" and compression in ("zstd", "zlib") and found.compression != compression:
        raise BuildError(f"{path.name}: compression is {found.compression}, expected {compression}")
    if not disk.compare(source, name):
        raise BuildError(f"{path.name}: content differs from {source.name} (qemu-img compare)")


def _write_ova(
    image: Path, dest: Path, basename: str, spec: FormatSpec, threads: int | None
) -> None:
    """An OVA: the OVF descriptor first (as the spec requires), then the vmdk, then a manifest."""
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".ova-") as tmp:
        work = Path(tmp)
        vmdk = work / f"{basename}-disk1.vmdk"
        options, _ = spec.qemu_options()
        disk.convert(image, vmdk, "vmdk", options=options, threads=threads)
        capacity = disk.info(vmdk).virtual_size
        ovf = work / f"{basename}.ovf"
        ovf.write_text(ovf_descriptor(basename, vmdk.name, vmdk.stat().st_size, capacity, spec))
        mf = work / f"{basename}.mf"
        mf.write_text(
            "".join(f"SHA256({p.name})= {sha256_file(p)}\n" for p in (ovf, vmdk)),
        )
        with tarfile.open(dest, "w", format=tarfile.USTAR_FORMAT) as tar:
            for part in (ovf, vmdk, mf):
                info = tar.gettarinfo(str(part), arcname=part.name)
                info.uid = info.gid = 0
                info.uname = info.gname = "root"
                with open(part, "rb") as fh:
                    tar.addfile(info, fh)


def ovf_descriptor(name: str, href: str, file_size: int, capacity: int, spec: FormatSpec) -> str:
    """A minimal OVF 1.0 envelope: one disk on a SCSI controller, CPUs, memory, one NIC."""
    vs_id = quoteattr(name)
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1"
  xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1"
  xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
  xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData">
  <References>
    <File ovf:id="file1" ovf:href={quoteattr(href)} ovf:size="{file_size}"/>
  </References>
  <DiskSection>
    <Info>Virtual disks</Info>
    <Disk ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:capacity="{capacity}"
      ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>
  </DiskSection>
  <NetworkSection>
    <Info>Networks</Info>
    <Network ovf:name="network"><Description>The network</Description></Network>
  </NetworkSection>
  <VirtualSystem ovf:id={vs_id}>
    <Info>A virtual machine built by vmbuild</Info>
    <Name>{name}</Name>
    <OperatingSystemSection ovf:id="96"><Info>Guest OS</Info></OperatingSystemSection>
    <VirtualHardwareSection>
      <Info>Virtual hardware</Info>
      <System>
        <vssd:ElementName>Virtual Hardware Family</vssd:ElementName>
        <vssd:InstanceID>0</vssd:InstanceID>
        <vssd:VirtualSystemIdentifier>{name}</vssd:VirtualSystemIdentifier>
        <vssd:VirtualSystemType>vmx-14</vssd:VirtualSystemType>
      </System>
      <Item>
        <rasd:AllocationUnits>hertz * 10^6</rasd:AllocationUnits>
        <rasd:ElementName>{spec.cpus} virtual CPU(s)</rasd:ElementName>
        <rasd:InstanceID>1</rasd:InstanceID>
        <rasd:ResourceType>3</rasd:ResourceType>
        <rasd:VirtualQuantity>{spec.cpus}</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits>
        <rasd:ElementName>{spec.memory_mib} MB of memory</rasd:ElementName>
        <rasd:InstanceID>2</rasd:InstanceID>
        <rasd:ResourceType>4</rasd:ResourceType>
        <rasd:VirtualQuantity>{spec.memory_mib}</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:ElementName>SCSI Controller 0</rasd:ElementName>
        <rasd:InstanceID>3</rasd:InstanceID>
        <rasd:ResourceSubType>lsilogic</rasd:ResourceSubType>
        <rasd:ResourceType>6</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:AddressOnParent>0</rasd:AddressOnParent>
        <rasd:ElementName>Hard Disk 1</rasd:ElementName>
        <rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource>
        <rasd:InstanceID>4</rasd:InstanceID>
        <rasd:Parent>3</rasd:Parent>
        <rasd:ResourceType>17</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:AutomaticAllocation>true</rasd:AutomaticAllocation>
        <rasd:Connection>network</rasd:Connection>
        <rasd:ElementName>Ethernet 1</rasd:ElementName>
        <rasd:InstanceID>5</rasd:InstanceID>
        <rasd:ResourceSubType>VmxNet3</rasd:ResourceSubType>
        <rasd:ResourceType>10</rasd:ResourceType>
      </Item>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
"""

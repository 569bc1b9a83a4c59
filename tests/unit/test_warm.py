"""Warm-state cache logic without VMs: keys, eligibility, XML retargeting, LRU eviction, locks."""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from vmbuild import warm
from vmbuild.build import BuildContext, BuildOptions
from vmbuild.config import Recipe
from vmbuild.fsutil import cache_key
from vmbuild.parent import ResolvedParent
from vmbuild.vm import accel
from vmbuild.vm.domain import QEMU_NS


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VMBUILD_CACHE", str(tmp_path / "cache"))


def context(tmp_path: Path, **recipe: object) -> BuildContext:
    data = {"name": "w", "version": "1.0.0", "parent": {"path": str(tmp_path / "p.qcow2")},
            **recipe}  # fmt: skip
    ctx = BuildContext(Recipe.from_dict(data), BuildOptions(), "id", tmp_path / "b")
    ctx.parent = ResolvedParent(tmp_path / "p.qcow2", "a" * 64, {"path": "p"})
    ctx.accel = accel.tcg()
    ctx.facts["host"] = {"qemu": "7.2", "libvirt": "9.0.0"}
    return ctx


def test_key_changes_with_every_determining_field(tmp_path):
    base = cache_key(warm.key_fields(context(tmp_path)))
    variants = [
        {"vm": {"cpus": 1}},
        {"vm": {"memory": 1024}},
        {"vm": {"firmware": "uefi"}},
        {"vm": {"machine": "q35"}},
        {"vm": {"disk_size": 8 << 30}},
        {"user_data": {"packages": ["curl"]}},
    ]
    keys = {cache_key(warm.key_fields(context(tmp_path, **v))) for v in variants}
    assert base not in keys and len(keys) == len(variants)
    other_parent = context(tmp_path)
    other_parent.parent = ResolvedParent(tmp_path / "p.qcow2", "b" * 64, {})
    assert cache_key(warm.key_fields(other_parent)) != base
    newer_qemu = context(tmp_path)
    newer_qemu.facts["host"] = {"qemu": "8.0", "libvirt": "9.0.0"}
    assert cache_key(warm.key_fields(newer_qemu)) != base


def test_eligibility(tmp_path):
    assert warm.ineligible(context(tmp_path)) is None
    assert "off" in warm.ineligible(context(tmp_path, warm=False))
    assert "user-mode" in warm.ineligible(
        context(tmp_path, vm={"network": {"mode": "libvirt", "name": "default"}})
    )
    reason = warm.ineligible(context(tmp_path, sanitize={"machine_id": False}))
    assert "machine_id" in reason
    ctx = context(tmp_path)
    ctx.options = BuildOptions(warm=False)
    assert warm.ineligible(ctx) is not None


SAVED_XML = f"""<domain type='qemu' xmlns:qemu='{QEMU_NS}'>
  <name>vmbuild-warm-abc-warm</name><uuid>0f0e0d0c-0b0a-0908-0706-050403020100</uuid>
  <os><type>hvm</type><nvram>/old/nvram.fd</nvram></os>
  <devices>
    <disk type='file' device='disk'><source file='/old/live.qcow2'/>
      <backingStore type='file'><source file='/parent.qcow2'/></backingStore>
      <target dev='vda' bus='virtio'/></disk>
    <disk type='file' device='disk'><source file='/old/seed.iso'/><target dev='vdb'/></disk>
    <serial type='pty'><log file='/old/console.log' append='off'/></serial>
  </devices>
  <qemu:commandline>
    <qemu:arg value='-netdev'/>
    <qemu:arg value='user,id=vmbuildnet0,hostfwd=tcp:127.0.0.1:40000-:22'/>
  </qemu:commandline>
</domain>"""


def test_retarget_xml_points_at_this_build(tmp_path):
    xml = warm.retarget_xml(
        SAVED_XML, name="vmbuild-b1-build", disk_path=tmp_path / "build.qcow2",
        seed=tmp_path / "seed.iso", console_log=tmp_path / "console.log", port=45678,
        nvram=tmp_path / "nvram.fd",
    )  # fmt: skip
    root = ET.fromstring(xml)
    assert root.findtext("name") == "vmbuild-b1-build"
    assert root.findtext("uuid") != "0f0e0d0c-0b0a-0908-0706-050403020100"
    sources = {d.find("target").get("dev"): d.find("source").get("file")
               for d in root.iter("disk")}  # fmt: skip
    assert sources == {"vda": str(tmp_path / "build.qcow2"), "vdb": str(tmp_path / "seed.iso")}
    assert root.find("devices/disk/backingStore") is None
    assert root.find("devices/serial/log").get("file") == str(tmp_path / "console.log")
    assert root.findtext("os/nvram") == str(tmp_path / "nvram.fd")
    args = [a.get("value") for a in root.iter(f"{{{QEMU_NS}}}arg")]
    assert "user,id=vmbuildnet0,hostfwd=tcp:127.0.0.1:45678-:22" in args
    assert "40000" not in xml


def fake_entry(key: str, size: int, last_used: float) -> warm.Entry:
    entry = warm.entry_for(key)
    entry.path.mkdir(parents=True)
    (entry.path / "state.sav").write_bytes(b"x" * size)
    (entry.path / "meta.json").write_text(json.dumps({"key": key, "last_used": last_used}))
    return entry


def test_evict_removes_least_recently_used_first_and_spares_busy_entries():
    now = time.time()
    fake_entry("old", 1000, now - 300)
    fake_entry("busy", 1000, now - 200)
    fake_entry("new", 1000, now - 100)
    with warm.locked("busy", shared=True):
        removed = warm.evict(limit=2500)
    assert removed == ["old"]  # "busy" is older than "new" but in use
    assert [e.key for e in warm.entries()] == ["new", "busy"]
    assert warm.evict(limit=1500) == ["busy"]
    assert [e.key for e in warm.entries()] == ["new"]


def test_size_limit_from_environment(monkeypatch):
    monkeypatch.setenv("VMBUILD_WARM_CACHE_MAX", "3G")
    assert warm.max_bytes() == 3 << 30
    monkeypatch.setenv("VMBUILD_WARM_CACHE_MAX", "lots")
    with pytest.raises(Exception, match="VMBUILD_WARM_CACHE_MAX"):
        warm.max_bytes()


def test_cache_verbs(capsys):
    from vmbuild.cli import main

    fake_entry("aaaa1111", 10, time.time())
    fake_entry("bbbb2222", 10, time.time() - 5)
    assert main(["--json", "cache", "list"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert [r["key"] for r in listing["warm"]] == ["aaaa1111", "bbbb2222"]
    assert main(["cache", "clear", "bbbb"]) == 0
    assert [e.key for e in warm.entries()] == ["aaaa1111"]
    assert main(["cache", "clear"]) == 0
    assert warm.entries() == []

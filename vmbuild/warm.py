"""Warm build VMs: boot a parent once, save the running VM, restore it for every build.

A warm state is a cache entry keyed by what determines it (parent sha256, VM shape,
extra user-data, accelerator, versions of vmbuild, QEMU and libvirt):

    <cache>/warm/<key>/state.sav   libvirt save image of the ready VM (memory + devices)
                       disk.qcow2  the disk at that moment, flattened, read-only
                       seed.iso    the NoCloud seed the VM booted with (attached again)
                       id_ed25519  the warm VM's build key (replaced in each build)
                       meta.json   key fields, host keys, sizes, created / last used

A build restores onto its own overlay of `disk.qcow2` from a per-build copy of the save
image whose XML names the build's domain, disk, console log and a fresh SSH port
(`vmbuild.vm.savefile`), so several builds restore one state at once. After the
restore vmbuild sets the guest clock, installs the build's own key and logs in with it.
The test VM always boots cold.

Creating an entry holds an exclusive lock on `<key>.lock`; builds that use an entry
hold a shared one, so eviction (least recently used first, over the size limit) and
`vmbuild cache clear` never pull a disk from under a running build.

No trace of the warm VM reaches an image: its host keys, machine-id and cloud-init
instance data are removed by sanitize, which is why a recipe that turns those groups
off builds cold; the warm key is replaced before the build runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import shutil
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vmbuild import __version__, disk, events
from vmbuild.build import BuildContext, host_versions
from vmbuild.config.units import parse_size
from vmbuild.errors import BuildError, InputError
from vmbuild.fsutil import cache_key, write_json
from vmbuild.keys import generate_keypair, load_keypair, write_known_hosts
from vmbuild.netutil import free_port
from vmbuild.paths import cache_dir
from vmbuild.ssh import Session, SSHError
from vmbuild.stages.guest import RunningVM, detach_after_session, ready_timeouts, vm_spec
from vmbuild.vm import savefile
from vmbuild.vm.domain import QEMU_NS
from vmbuild.vm.machine import (
    LOOPBACK,
    BootStalled,
    Machine,
    UserNetwork,
    connect,
    destroy_domain,
    domain_name,
    is_port_clash,
    launch,
)
from vmbuild.vm.network import SSH_PORT, Forward

FORMAT = 3  # bump when the entry layout or the way states are made changes
DEFAULT_MAX_BYTES = 20 * 2**30
IDENTITY_GROUPS = ("ssh_host_keys", "machine_id", "cloud_init")
RESTORE_ATTEMPTS = 4


# Run in the warm VM before the save. QEMU writes all-zero pages as a flag, not 4 KiB,
# but freed pages keep their old bytes: drop the page cache, then fill the free memory
# with zeros through a tmpfs and free it again. The save image then holds about the
# memory in use (measured: 302 MiB before, see benchmarks), and so does every copy.
ZERO_FREE_MEMORY = """
sync
echo 3 > /proc/sys/vm/drop_caches
free_kib=$(awk '/^MemAvailable:/ {print $2}' /proc/meminfo)
fill_kib=$((free_kib - 131072))
if [ "$fill_kib" -gt 65536 ]; then
  mkdir -p /run/vmbuild-zero
  if mount -t tmpfs -o "size=${fill_kib}k" vmbuild-zero /run/vmbuild-zero; then
    dd if=/dev/zero of=/run/vmbuild-zero/fill bs=1M 2>/dev/null
    umount /run/vmbuild-zero
  fi
  rmdir /run/vmbuild-zero
fi
echo 3 > /proc/sys/vm/drop_caches
"""


# What every build runs first, rehearsed after the free memory is zeroed, so the
# programs and Python modules it reads are in the page cache of the saved memory and
# the first agent run after a restore does not wait on the disk (about 1.5 s under
# TCG). The files sit on tmpfs (/dev/shm) and are removed before the save.
REHEARSAL_ROOT = "/dev/shm/vmbuild-rehearsal"
REHEARSAL_DOCUMENT = """\
name: vmbuild-warm-rehearsal
schemaVersion: 1.0
phases:
  - name: build
    steps:
      - name: Rehearse
        action: ExecuteBash
        inputs:
          commands: ["true"]
"""
PRELOAD = "tar pgrep pkill userdel fstrim journalctl systemd-run sync find truncate"
REHEARSAL = f"""\
cd {REHEARSAL_ROOT} && sudo -n python3 vmbuild-agent.pyz run --documents rehearsal.yml \\
    --phases build --log-directory logs --state-directory state --quiet >/dev/null
cd / && rm -rf {REHEARSAL_ROOT}
for tool in {PRELOAD}; do p=$(command -v $tool) && cat "$p" >/dev/null; done
"""
SETTLED = "vmbuild-warm: settled"


def _settle(machine: Machine, session: Session, agent: Path, work: Path) -> None:
    """Copy the rehearsal in and close the session; then, once its sshd has gone (so no
    session process sits in the saved memory), the guest zeroes its free memory,
    rehearses a build's first agent run, and says it is done on the console."""
    document = work / "rehearsal.yml"  # work becomes the entry: not left there
    document.write_text(REHEARSAL_DOCUMENT)
    try:
        session.put_files({"vmbuild-agent.pyz": agent, "rehearsal.yml": document},
                          REHEARSAL_ROOT, clean=True)  # fmt: skip
    finally:
        document.unlink()
    settle = ZERO_FREE_MEMORY + REHEARSAL + f"echo '{SETTLED}' > /dev/console\n"
    session.run("sudo -n bash -s", input=detach_after_session(settle, "vmbuild-warm-settle"),
                check=True, timeout=60)  # fmt: skip
    session.close()
    deadline = time.monotonic() + machine.scale(300)
    while SETTLED not in machine.console_text():
        machine.check_alive()
        if time.monotonic() > deadline:
            raise machine.failure("the warm VM did not finish zeroing its free memory")
        time.sleep(0.2)


class WarmStateError(BuildError):
    """A warm state could not be made or restored (the build falls back to a cold boot)."""


# -- keys and entries ----------------------------------------------------------------


def key_fields(ctx: BuildContext) -> dict[str, Any]:
    """Everything that determines a warm state; any change makes a new entry."""
    vm = ctx.recipe.vm
    versions = ctx.facts.get("host") or host_versions()
    return {
        "format": FORMAT,
        "parent_sha256": ctx.parent.sha256,
        "cpus": vm.cpus,
        "memory_mib": vm.memory,
        "disk_size": vm.disk_size,
        "firmware": vm.firmware.value,
        "machine": vm.machine.value,
        "accelerator": ctx.accel.name,
        "cpu": ctx.accel.cpu_model or ctx.accel.cpu_mode,
        "user_data": ctx.recipe.user_data,
        "uri": vm.uri,
        "vmbuild": __version__,
        "qemu": versions.get("qemu"),
        "libvirt": versions.get("libvirt"),
    }


def ineligible(ctx: BuildContext) -> str | None:
    """Why this build must boot cold, or None when a warm state can serve it."""
    if not (ctx.options.warm and ctx.recipe.warm):
        return "warm states are off (--no-warm or warm: false)"
    if ctx.recipe.vm.network.mode.value != "user":
        return "warm states need user-mode networking"
    off = [g for g in IDENTITY_GROUPS if not getattr(ctx.recipe.sanitize, g)]
    if off:
        return f"sanitize turns off {', '.join(off)}, which would keep the warm VM's identity"
    return None


def max_bytes() -> int:
    """The cache's size limit: VMBUILD_WARM_CACHE_MAX (bytes or 20G-style), default 20 GiB."""
    raw = os.environ.get("VMBUILD_WARM_CACHE_MAX")
    if not raw:
        return DEFAULT_MAX_BYTES
    try:
        return parse_size(raw)
    except ValueError as exc:
        raise InputError(f"VMBUILD_WARM_CACHE_MAX: {exc}") from exc


def root() -> Path:
    return cache_dir("warm")


@dataclass(frozen=True)
class Entry:
    key: str
    path: Path

    @property
    def meta_path(self) -> Path:
        return self.path / "meta.json"

    def meta(self) -> dict[str, Any]:
        return json.loads(self.meta_path.read_text())

    def exists(self) -> bool:
        return self.meta_path.is_file()

    def size(self) -> int:
        return sum(p.stat().st_size for p in self.path.iterdir() if p.is_file())

    def touch(self) -> None:
        meta = self.meta()
        meta["last_used"] = time.time()
        write_json(self.meta_path, meta)


def entry_for(key: str) -> Entry:
    return Entry(key, root() / key)


def entries() -> list[Entry]:
    """Complete entries, most recently used first."""
    found = [
        Entry(p.name, p) for p in root().iterdir() if p.is_dir() and (p / "meta.json").is_file()
    ]
    return sorted(found, key=lambda e: e.meta().get("last_used", 0), reverse=True)


@contextlib.contextmanager
def locked(key: str, *, shared: bool, blocking: bool = True) -> Iterator[bool]:
    """fcntl lock on `<key>.lock`; yields False when non-blocking and already held."""
    with open(root() / f"{key}.lock", "a+") as fh:
        flags = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        try:
            fcntl.flock(fh, flags | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def remove(entry: Entry) -> bool:
    """Delete an entry unless a build is using it; True if it was removed."""
    with locked(entry.key, shared=False, blocking=False) as got:
        if not got:
            return False
        shutil.rmtree(entry.path, ignore_errors=True)
        (root() / f"{entry.key}.lock").unlink(missing_ok=True)
        return True


def evict(limit: int | None = None) -> list[str]:
    """Remove least recently used entries until the cache fits `limit` bytes."""
    limit = max_bytes() if limit is None else limit
    current = entries()
    total = sum(e.size() for e in current)
    removed = []
    for entry in reversed(current):  # least recently used first
        if total <= limit:
            break
        size = entry.size()
        if remove(entry):
            total -= size
            removed.append(entry.key)
    return removed


# -- making a state ------------------------------------------------------------------


def create(ctx: BuildContext, key: str, fields: dict[str, Any]) -> Entry:
    """Boot the parent cold, wait until ready, save it; the caller holds the exclusive lock."""
    entry = entry_for(key)
    work = root() / f".{key}.{os.getpid()}.tmp"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(mode=0o700)
    try:
        live = ctx.parent_overlay(work / "live.qcow2")
        warm_key = generate_keypair(work / "id_ed25519", comment="vmbuild-warm")
        spec = vm_spec(ctx, "warm", live)
        spec = dataclasses.replace(spec, build_key=warm_key, workdir=work / "vm",
                                   console_log=ctx.logs / "console-warm.log",
                                   keep_on_error=False)  # fmt: skip
        start = time.monotonic()
        with launch(spec) as machine:
            session = machine.wait_ready(ready_timeouts(ctx))
            boot_seconds = time.monotonic() - start
            assert ctx.agent is not None
            _settle(machine, session, ctx.agent, work)
            shutil.copyfile(machine.files / "seed.iso", work / "seed.iso")
            nvram = machine.files / "nvram.fd"
            if nvram.exists():
                shutil.copyfile(nvram, work / "nvram.fd")
            host_keys = list(machine.host_keys)
            mac = machine.network.mac
            save_start = time.monotonic()
            machine.domain.save(str(work / "state.sav"))
            save_seconds = time.monotonic() - save_start
        disk.convert(live, work / "disk.qcow2", "qcow2")  # standalone: no parent needed
        live.unlink()
        shutil.rmtree(work / "vm", ignore_errors=True)
        (work / "disk.qcow2").chmod(0o444)
        now = time.time()
        write_json(work / "meta.json", {
            "key": key, "fields": fields, "host_keys": host_keys, "mac": mac,
            "user": spec.user, "created": now, "last_used": now,
            "boot_seconds": round(boot_seconds, 1), "save_seconds": round(save_seconds, 1),
        })  # fmt: skip
        shutil.rmtree(entry.path, ignore_errors=True)
        work.rename(entry.path)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    events.info(f"warm state {key[:12]} saved ({entry.size() / 2**20:.0f} MiB)")
    evict()
    return entry


# -- restoring -----------------------------------------------------------------------


def retarget_xml(xml: str, *, name: str, disk_path: Path, seed: Path, console_log: Path,
                 port: int, nvram: Path | None) -> str:  # fmt: skip
    """The saved domain XML, renamed and pointed at this build's files and port."""
    root_el = ET.fromstring(xml)
    root_el.find("name").text = name  # type: ignore[union-attr]
    uuid_el = root_el.find("uuid")
    if uuid_el is not None:
        uuid_el.text = str(uuid.uuid4())
    for disk_el in root_el.iter("disk"):
        target = disk_el.find("target")
        source = disk_el.find("source")
        if target is None or source is None:
            continue
        dev = target.get("dev")
        if dev == "vda":
            source.set("file", str(disk_path))
        elif dev == "vdb":
            source.set("file", str(seed))
        for backing in disk_el.findall("backingStore"):
            disk_el.remove(backing)
    for log in root_el.iter("log"):
        log.set("file", str(console_log))
    nvram_el = root_el.find("os/nvram")
    if nvram_el is not None and nvram is not None:
        nvram_el.text = str(nvram)
    for arg in root_el.iter(f"{{{QEMU_NS}}}arg"):
        value = arg.get("value", "")
        if "hostfwd=" in value:
            parts = [p for p in value.split(",") if not p.startswith("hostfwd=")]
            parts.append(f"hostfwd={Forward(port, SSH_PORT).hostfwd()}")
            arg.set("value", ",".join(parts))
    return ET.tostring(root_el, encoding="unicode")


def _restore_domain(
    ctx: BuildContext, entry: Entry, overlay: Path
) -> tuple[Any, Any, int, Callable[[int], str]]:
    """Restore a per-build copy of the state; returns (conn, domain, ssh port, and the
    domain XML for a given port, which a later power-cycle reboot starts afresh)."""
    import libvirt

    image = savefile.read(entry.path / "state.sav")
    name = domain_name(ctx.build_id, "build")
    nvram = None
    if (entry.path / "nvram.fd").exists():
        nvram = ctx.tmp / "nvram.fd"
        shutil.copyfile(entry.path / "nvram.fd", nvram)
    conn = connect(ctx.recipe.vm.uri)
    copy = ctx.tmp / "state.sav"

    def xml_for(port: int) -> str:
        return retarget_xml(image.xml, name=name, disk_path=overlay,
                            seed=entry.path / "seed.iso",
                            console_log=ctx.logs / "console-build.log",
                            port=port, nvram=nvram)  # fmt: skip

    try:
        for attempt in range(1, RESTORE_ATTEMPTS + 1):
            port = free_port()
            savefile.write(image, xml_for(port), copy)
            try:
                conn.restore(str(copy))
                return conn, conn.lookupByName(name), port, xml_for
            except libvirt.libvirtError as exc:
                if is_port_clash(str(exc)) and attempt < RESTORE_ATTEMPTS:
                    continue
                raise WarmStateError(f"libvirt could not restore the warm state: {exc}") from exc
        raise AssertionError("unreachable")
    except BaseException:
        destroy_domain(conn, name)
        conn.close()
        raise
    finally:
        copy.unlink(missing_ok=True)


def _adopt(ctx: BuildContext, entry: Entry, conn: Any, domain: Any, port: int,
           overlay: Path, stack: contextlib.ExitStack) -> RunningVM:  # fmt: skip
    """Wrap the restored domain as this build's VM; swap the warm key for the build's."""
    meta = entry.meta()
    files = ctx.tmp / "vm" / domain.name()
    files.mkdir(parents=True, exist_ok=True, mode=0o700)
    known_hosts = write_known_hosts(files / "known_hosts", LOOPBACK, port, meta["host_keys"])
    spec = vm_spec(ctx, "build", overlay)
    network = UserNetwork((Forward(port, SSH_PORT),), meta["mac"])
    warm_key = load_keypair(entry.path / "id_ed25519")
    machine = Machine(spec, conn, domain, ctx.accel, network, warm_key, known_hosts,
                      meta["host_keys"], files)  # fmt: skip
    vm = RunningVM(ctx, "build", machine, stack)
    session = Session.wait(machine.target(), timeout=machine.scale(60), check=machine.check_alive)

    def settle() -> None:
        # One command: the clock (it stopped while the state sat on disk), then the
        # build's key in place of the warm key. It runs while vmbuild pushes the
        # payload and starts the agent, which waits at its gate until it is done.
        # The build user writes its own file: no second sudo (each costs under TCG).
        session.run(
            f"sudo -n date -u -s @{time.time():.3f} >/dev/null && umask 077 && "
            f"mkdir -p ~/.ssh && cat > ~/.ssh/authorized_keys.new && "
            f"mv -f ~/.ssh/authorized_keys.new ~/.ssh/authorized_keys",
            input=ctx.build_key.public + "\n", check=True, timeout=60,
        )  # fmt: skip
        # This login stays valid; the warm key no longer opens a new one, and every
        # later login (after a reboot) uses the build's key.
        machine.key = ctx.build_key
        session.target = machine.target()

    vm.session = session
    vm.settling = events.submit(settle, f"{machine.name}-settle")
    vm.stack.callback(vm.close_session)
    return vm


def _restore(ctx: BuildContext, entry: Entry, stack: contextlib.ExitStack) -> RunningVM:
    """Restore `entry` as this build's VM; everything made is registered on `stack`."""
    assert ctx.overlay is not None
    overlay = ctx.overlay
    overlay.unlink(missing_ok=True)
    disk.overlay(entry.path / "disk.qcow2", overlay)
    conn, domain, port, xml_for = _restore_domain(ctx, entry, overlay)
    stack.callback(conn.close)
    name = domain.name()
    held: dict[str, RunningVM] = {}

    def destroy_unless_kept(exc_type: Any, exc: Any, tb: Any) -> bool:
        if exc_type is not None and ctx.keep_on_error and "vm" in held:
            command = held["vm"].machine.ssh_command()
            events.warn(f"{name}: kept running for debugging; get in with: {command}")
            return False
        destroy_domain(conn, name)
        return False

    stack.push(destroy_unless_kept)
    held["vm"] = _adopt(ctx, entry, conn, domain, port, overlay, stack)
    machine = held["vm"].machine
    mac = entry.meta()["mac"]

    def fresh_xml() -> tuple[str, UserNetwork]:
        new_port = free_port()
        return xml_for(new_port), UserNetwork((Forward(new_port, SSH_PORT),), mac)

    # A reboot inside a restored QEMU stalls for minutes under TCG (soft lockups in
    # clear_page); a power cycle boots the same disk in a fresh QEMU, as for cold VMs.
    machine.enable_power_cycle(xml_for(port), fresh_xml)
    return held["vm"]


def start_build_vm(ctx: BuildContext) -> RunningVM | None:
    """The build VM restored from a warm state (made first if missing), or None for cold.

    A state that fails to restore is removed and made again once; if that fails too,
    or the boot that makes it stalls, the build boots cold (`RunningVM.boot_ready` makes
    a fresh overlay of the parent, replacing whatever a restore left in `ctx.overlay`).
    """
    fields = key_fields(ctx)
    key = cache_key(fields)
    for attempt in (1, 2):
        entry = entry_for(key)
        created = False
        if not entry.exists():
            with locked(key, shared=False):
                if not entry.exists():
                    try:
                        with events.stage("warm-create", "Saving a warm state of the parent"):
                            entry = create(ctx, key, fields)
                    except BootStalled as exc:
                        events.warn(f"{exc.message.splitlines()[0]}; booting the build VM cold")
                        ctx.facts["warm"] = {"key": key, "fallback": True}
                        break
                    created = True
        stack = contextlib.ExitStack()
        try:
            stack.enter_context(locked(key, shared=True))
            if not entry.exists():  # removed between our check and the lock
                stack.close()
                continue
            start = time.monotonic()
            vm = _restore(ctx, entry, stack)
        except (WarmStateError, SSHError, savefile.SaveFileError, OSError) as exc:
            stack.close()
            events.warn(
                f"warm state {key[:12]} did not restore ({exc}); "
                + ("making it again" if attempt == 1 else "booting cold")
            )
            with locked(key, shared=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            ctx.facts["warm"] = {"key": key, "fallback": True}
            continue
        except BaseException:
            stack.close()
            raise
        seconds = round(time.monotonic() - start, 1)
        entry.touch()
        ctx.facts["warm"] = {"key": key, "created": created, "restore_seconds": seconds,
                             "fallback": attempt > 1}  # fmt: skip
        ctx.facts.setdefault("boot_seconds", {})["build"] = seconds
        events.info(
            f"restored warm state {key[:12]} in {seconds:.1f}s (port {vm.machine.ssh_port})"
        )
        return vm
    return None  # the caller boots cold, on a fresh overlay of the parent

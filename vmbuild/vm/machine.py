"""VM lifecycle: launch a build or test VM, wait until it is ready, shut it down.

`launch(spec)` is a context manager. It makes the per-VM files (seed with fresh
host keys, known_hosts), starts a *transient* libvirt domain named
`vmbuild-<build id>-<role>` (it vanishes when QEMU exits, so nothing stays
defined) and destroys it on any error, Ctrl-C or SIGTERM unless the caller asked
to keep a failed VM. `remove_leftovers()` clears domains a killed process left.

Readiness is three stages, each with its own timeout (scaled for TCG) and a
`BuildError` naming the stage plus the console tail: sshd answers (SSH banner),
SSH login (build key, pinned host key), cloud-init done (vm/cloudinit.py). Throughout,
the domain is watched: QEMU exiting or a kernel panic on the console fails at once.

`Machine.reboot()` power-cycles (clean power-off, then a fresh QEMU from the same
XML): under TCG a reset inside the same QEMU made the next boot stall for minutes.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from vmbuild import events
from vmbuild.errors import BuildError, InputError
from vmbuild.keys import (
    KeyPair,
    fingerprint,
    generate_host_keys,
    generate_keypair,
    write_known_hosts,
)
from vmbuild.netutil import free_port
from vmbuild.seed import SeedSpec, write_seed
from vmbuild.signals import interruptible
from vmbuild.ssh import (
    ConnectionLost,
    Session,
    SSHError,
    SSHTimeout,
    Target,
    wait_for_banner,
)
from vmbuild.vm import accel as accel_mod
from vmbuild.vm import cloudinit
from vmbuild.vm.accel import Accelerator
from vmbuild.vm.domain import DomainSpec, Uefi, domain_xml, wants_root_seclabel
from vmbuild.vm.network import (
    LOOPBACK,
    Forward,
    LibvirtNetwork,
    UserNetwork,
    from_config,
    guest_address,
    hostfwd_add,
    is_port_clash,
    random_mac,
)

DEFAULT_URI = "qemu:///system"
PREFIX = "vmbuild-"
PORT_ATTEMPTS = 8
CONSOLE_TAIL = 30
_PANIC = re.compile(r"Kernel panic - not syncing.*|end Kernel panic.*")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\r")


class DomainExists(BuildError):
    """A domain of the same name exists already (left by an earlier run)."""


class BootStalled(BuildError):
    """The guest wrote to its console, then nothing more for too long before SSH came up."""


@dataclass(frozen=True)
class ReadyTimeouts:
    """Seconds per readiness stage under KVM; multiplied by the accelerator's factor."""

    banner: float = 120.0
    login: float = 30.0
    cloud_init: float = 300.0
    # The longest the serial console may stay silent before sshd answers, once the guest
    # has written to it: a stalled boot fails then, not at the banner timeout.
    silence: float = 60.0


@dataclass(frozen=True)
class VMSpec:
    """What the caller asks for. `disk` is a qcow2 overlay the VM may write."""

    build_id: str
    role: str  # "build", "test", ...
    disk: Path
    workdir: Path  # private folder for per-VM files (seed, keys, known_hosts, nvram)
    console_log: Path
    uri: str = DEFAULT_URI
    accelerator: str | Accelerator = "auto"
    memory_mib: int = 2048
    vcpus: int = 2
    network: Mapping[str, Any] | None = None  # {mode: user} or {mode: libvirt, name: default}
    uefi: bool = False
    user: str = "build"
    build_key: KeyPair | None = None  # shared by a build's VMs; generated when None
    extra_user_data: Mapping[str, Any] | None = None
    extra_user_data_source: str = "user_data"
    keep_on_error: bool = False
    extra_disks: tuple[Path, ...] = field(default_factory=tuple)
    machine: str = "pc"  # pc | q35


def domain_name(build_id: str, role: str) -> str:
    """`vmbuild-<build id>-<role>`, restricted to characters safe everywhere."""
    raw = f"{PREFIX}{build_id}-{role}"
    return re.sub(r"[^A-Za-z0-9_.-]", "-", raw)


def _libvirt() -> Any:
    import libvirt

    # libvirt prints every error to stderr by default; errors reach us as exceptions.
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    return libvirt


def connect(uri: str = DEFAULT_URI) -> Any:
    libvirt = _libvirt()
    try:
        return libvirt.open(uri)
    except libvirt.libvirtError as exc:
        raise BuildError(
            f"cannot connect to libvirt at {uri}: {exc}",
            hint="is libvirtd running? (make setup starts it)",
        ) from exc


class Machine:
    """A running VM: its domain, SSH target and console log."""

    def __init__(
        self,
        spec: VMSpec,
        conn: Any,
        domain: Any,
        accel: Accelerator,
        network: UserNetwork | LibvirtNetwork,
        key: KeyPair,
        known_hosts: Path,
        host_keys: list[str],
        files: Path,
    ) -> None:
        self.spec = spec
        self.conn = conn
        self.domain = domain
        self.name: str = domain.name()
        self.accel = accel
        self.network = network
        self.key = key
        self.known_hosts = known_hosts
        self.host_keys = host_keys
        self.files = files
        self.console_log = spec.console_log
        self._console_offset = 0
        self._console_partial = ""
        self._console_lock = threading.Lock()  # pumped from the cloud-init watch thread too
        self._console_seen = time.monotonic()  # when the console last grew
        self._address: str | None = LOOPBACK if isinstance(network, UserNetwork) else None
        self._xml: str | None = None  # set by launch(): what power_cycle() starts again
        self._make_xml: Callable[[], tuple[str, UserNetwork | LibvirtNetwork]] | None = None
        self._forwards: list[Forward] = []
        # Seconds from wait_ready()'s start to SSH login and to cloud-init done.
        self._ready_start = time.monotonic()
        self.ssh_seconds: float | None = None
        self.cloud_init_seconds: float | None = None

    # -- state --------------------------------------------------------------

    def scale(self, seconds: float) -> float:
        return self.accel.scale(seconds)

    def is_running(self) -> bool:
        libvirt = _libvirt()
        try:
            return bool(self.domain.isActive())
        except libvirt.libvirtError:  # a transient domain is gone once QEMU exits
            return False

    def console_text(self) -> str:
        try:
            return self.console_log.read_text(errors="replace")
        except OSError:
            return ""

    def console_tail(self, lines: int = CONSOLE_TAIL) -> str:
        text = _ANSI.sub("", self.console_text())
        return "\n".join(text.splitlines()[-lines:])

    def _qemu_log_tail(self, lines: int = 10) -> str:
        path = Path("/var/log/libvirt/qemu") / f"{self.name}.log"
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def failure(self, message: str) -> BuildError:
        """A BuildError for `message` with the console tail attached."""
        tail = self.console_tail()
        detail = f"\n--- last {CONSOLE_TAIL} console lines ({self.console_log}) ---\n{tail}"
        return BuildError(
            f"{self.name}: {message}{detail if tail else ''}",
            hint=f"full console log: {self.console_log}",
        )

    def pump_console(self) -> None:
        """Send new console lines to the event stream (source `console`)."""
        with self._console_lock:
            self._pump_console()

    def _pump_console(self) -> None:
        try:
            with open(self.console_log, "rb") as fh:
                fh.seek(self._console_offset)
                data = fh.read()
        except OSError:
            return
        if not data:
            return
        self._console_seen = time.monotonic()
        self._console_offset += len(data)
        text = self._console_partial + data.decode(errors="replace")
        *lines, self._console_partial = text.split("\n")
        for line in lines:
            clean = _ANSI.sub("", line).rstrip()
            if clean:
                events.output(clean, source="console")

    def check_alive(self) -> None:
        """Raise at once if QEMU exited or the guest kernel panicked."""
        self.pump_console()
        if not self.is_running():
            qemu = self._qemu_log_tail()
            extra = f"\n--- QEMU log ---\n{qemu}" if qemu else ""
            panic = _PANIC.search(self.console_text())
            what = (
                f"guest kernel panic: {panic.group(0)}" if panic else "the VM stopped (QEMU exited)"
            )
            raise self.failure(what + extra)
        panic = _PANIC.search(self.console_text())
        if panic:
            raise self.failure(f"guest kernel panic: {panic.group(0).strip()}")

    def check_booting(self, silence: float) -> None:
        """`check_alive`, and raise BootStalled once the console, after some output, has
        been silent for `silence` seconds (as given, not scaled): a guest that stops
        making progress while booting. A guest that never writes to it is not judged."""
        self.check_alive()
        quiet = time.monotonic() - self._console_seen
        if self._console_offset and quiet > silence:
            tail = self.console_tail()
            raise BootStalled(
                f"{self.name}: the guest stopped making progress while booting: no console "
                f"output for {quiet:.0f}s (timeouts.boot)"
                + (f"\n--- last {CONSOLE_TAIL} console lines ({self.console_log}) ---\n{tail}"
                   if tail else ""),
                hint=f"full console log: {self.console_log}",
            )  # fmt: skip

    # -- SSH ----------------------------------------------------------------

    @property
    def ssh_host(self) -> str:
        if self._address is None:
            raise BuildError(f"{self.name}: guest address not known yet")
        return self._address

    @property
    def ssh_port(self) -> int:
        return self.network.ssh_port if isinstance(self.network, UserNetwork) else 22

    def target(self) -> Target:
        return Target(self.ssh_host, self.ssh_port, self.spec.user, self.key.private_path,
                      self.known_hosts)  # fmt: skip

    def ssh_command(self) -> str:
        """The `ssh` command line a user can paste to get in."""
        return self.target().command()

    def _wait_address(self, timeout: float) -> None:
        if self._address is not None:
            return
        assert isinstance(self.network, LibvirtNetwork)
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            found = guest_address(self.domain, self.network.mac)
            if found:
                self._address = found
                write_known_hosts(self.known_hosts, found, 22, self.host_keys)
                return
            if time.monotonic() >= deadline:
                raise self.failure(
                    f"timed out after {timeout:.0f}s waiting for a DHCP lease or guest-agent "
                    f"address on network {self.network.name!r} (MAC {self.network.mac})"
                )
            time.sleep(2.0)

    def wait_ready(
        self, timeouts: ReadyTimeouts | None = None, *, cloud_init: bool = True
    ) -> Session:
        """Wait for sshd, log in, then (with `cloud_init`) wait for cloud-init; returns
        the session. Without it, `watch_cloud_init` waits while the caller goes on."""
        t = timeouts or ReadyTimeouts()
        self._ready_start = start = time.monotonic()
        try:
            banner, silence = self.scale(t.banner), self.scale(t.silence)
            self._wait_address(banner)
            try:
                sock = wait_for_banner(self.ssh_host, self.ssh_port, timeout=banner,
                                       check=lambda: self.check_booting(silence))  # fmt: skip
            except SSHTimeout as exc:
                raise self.failure(f"timed out waiting for sshd: {exc.message}") from exc
            events.info(f"{self.name}: sshd answers after {time.monotonic() - start:.1f}s")
            try:
                session = Session.wait(self.target(), timeout=self.scale(t.login),
                                       check=self.check_alive, sock=sock)  # fmt: skip
            except SSHTimeout as exc:
                raise self.failure(f"timed out logging in over SSH: {exc.message}") from exc
            self.ssh_seconds = time.monotonic() - start
            events.info(f"{self.name}: SSH login after {self.ssh_seconds:.1f}s")
            if cloud_init:
                try:
                    self.watch_cloud_init(session, t).result()
                except BaseException:
                    session.close()
                    raise
            return session
        finally:
            self.pump_console()

    def watch_cloud_init(
        self, session: Session, timeouts: ReadyTimeouts | None = None
    ) -> Future[None]:
        """Wait for cloud-init to finish on a channel of `session`, in a thread; the
        future fails with the error `wait_ready` would raise (console tail included).

        A caller that has logged in can meanwhile push files and start programs whose
        start-up overlaps cloud-init's last stage, gating what must wait for it.
        """
        timeout = self.scale((timeouts or ReadyTimeouts()).cloud_init)

        def wait() -> None:
            self._wait_cloud_init(session, timeout)
            self.cloud_init_seconds = time.monotonic() - self._ready_start
            events.info(f"{self.name}: cloud-init done after {self.cloud_init_seconds:.1f}s")

        return events.submit(wait, f"{self.name}-cloud-init")

    def _wait_cloud_init(self, session: Session, timeout: float) -> None:
        stop = threading.Event()

        def watch() -> None:  # keep console events flowing while the command blocks
            while not stop.wait(2.0):
                self.pump_console()

        watcher = events.in_thread(watch, f"{self.name}-console")
        try:
            result = session.run("sh -s", input=cloudinit.WAIT_SCRIPT, timeout=timeout)
        except SSHTimeout as exc:
            raise self.failure(f"timed out after {timeout:.0f}s waiting for cloud-init") from exc
        except SSHError as exc:
            self.check_alive()
            raise self.failure(f"lost SSH while waiting for cloud-init: {exc.message}") from exc
        finally:
            stop.set()
            watcher.join()
        try:
            outcome = cloudinit.parse_result(result.stdout)
        except ValueError as exc:
            raise self.failure(f"cloud-init: {exc} {result.stderr.strip()}") from exc
        if outcome.errors:
            raise self.failure("cloud-init failed:\n  " + "\n  ".join(outcome.errors))
        if outcome.warnings:
            events.warn(f"{self.name}: cloud-init finished with warnings:\n  "
                        + "\n  ".join(outcome.warnings))  # fmt: skip
        if outcome.state != "done":
            events.info(f"{self.name}: cloud-init is {outcome.state} in this image")

    def enable_power_cycle(
        self, xml: str, make_xml: Callable[[], tuple[str, UserNetwork | LibvirtNetwork]]
    ) -> None:
        """Let reboot() power-cycle: start a fresh QEMU from this XML (console appended)."""
        self._xml = xml.replace('append="off"', 'append="on"')
        self._make_xml = make_xml

    def reboot(self, session: Session, *, timeout: float = 300.0) -> Session:
        """Reboot and log in to the new boot; the same session object is returned.

        This is a power cycle: a clean power-off, then a fresh QEMU from the same XML,
        disks and seed. A guest reset inside the same QEMU is slow under TCG (the second
        boot stalls for minutes clearing pages that held translated code: soft lockups
        in clear_page); a fresh process boots as fast as the first time.
        """
        assert self._xml is not None, "launch() and warm restores enable power cycles"
        old = session.boot_id()
        try:
            code, _, err = session.run("sudo -n systemctl poweroff", timeout=60)
        except (ConnectionLost, SSHTimeout):
            pass  # the connection went down with the guest
        else:
            if code != 0:
                raise self.failure(f"power-off for reboot failed (exit {code}): {err.strip()}")
        session.close()
        if not self.wait_stopped(self.scale(120.0)):
            events.warn(f"{self.name}: no clean power-off for the reboot; destroying")
            self.destroy()
        self._recreate()
        silence = self.scale(ReadyTimeouts().silence)
        try:
            sock = wait_for_banner(self.ssh_host, self.ssh_port, timeout=self.scale(timeout),
                                   check=lambda: self.check_booting(silence))  # fmt: skip
            fresh = Session.wait(self.target(), timeout=self.scale(60.0), check=self.check_alive,
                                 sock=sock)  # fmt: skip
        except SSHTimeout as exc:
            raise self.failure(f"no SSH after the reboot: {exc.message}") from exc
        if fresh.boot_id() == old:
            fresh.close()
            raise self.failure("the guest reports the same boot id after a power cycle")
        session.adopt(fresh)
        return session

    def _recreate(self) -> None:
        """Start the domain again from the saved XML (a new SSH port if the old one went)."""
        assert self._xml is not None and self._make_xml is not None
        libvirt = _libvirt()
        self._console_seen = time.monotonic()
        for attempt in range(1, PORT_ATTEMPTS + 1):
            try:
                self.domain = self.conn.createXML(self._xml, 0)
                break
            except libvirt.libvirtError as exc:
                user = isinstance(self.network, UserNetwork)
                if not (user and is_port_clash(str(exc)) and attempt < PORT_ATTEMPTS):
                    raise self.failure(f"libvirt could not start the VM again: {exc}") from exc
                xml, self.network = self._make_xml()
                self._xml = xml.replace('append="off"', 'append="on"')
                write_known_hosts(self.known_hosts, LOOPBACK, self.ssh_port, self.host_keys)
        if isinstance(self.network, UserNetwork):
            for forward in self._forwards:  # forwards added through the monitor die with QEMU
                hostfwd_add(self.domain, forward, netdev_id=self.network.netdev_id)

    # -- networking ---------------------------------------------------------

    def add_forward(self, guest_port: int, host_port: int | None = None) -> int:
        """Forward 127.0.0.1:host_port (a free one by default) to the guest; returns it."""
        if not isinstance(self.network, UserNetwork):
            raise InputError("port forwards exist only with user-mode networking")
        for _ in range(PORT_ATTEMPTS if host_port is None else 1):
            port = host_port or free_port()
            try:
                forward = Forward(port, guest_port)
                hostfwd_add(self.domain, forward, netdev_id=self.network.netdev_id)
                self._forwards.append(forward)
                return port
            except BuildError:
                if host_port is not None:
                    raise
        raise BuildError(f"{self.name}: no free host port for a forward to guest port {guest_port}")

    # -- stopping -----------------------------------------------------------

    def shutdown(self, timeout: float = 120.0) -> bool:
        """ACPI power-off, waiting up to `timeout` (scaled); then destroy. True if clean."""
        libvirt = _libvirt()
        if not self.is_running():
            return True
        deadline = time.monotonic() + self.scale(timeout)
        while (remaining := deadline - time.monotonic()) > 0:
            # An ACPI event sent before the guest's handler ran is lost: repeat it every 30 s.
            with contextlib.suppress(libvirt.libvirtError):
                self.domain.shutdown()
            if self.wait_stopped(min(30.0, remaining)):
                return True
        events.warn(f"{self.name}: no clean shutdown within {self.scale(timeout):.0f}s; destroying")
        self.destroy()
        return False

    def wait_stopped(self, seconds: float) -> bool:
        """Wait up to `seconds` (as given, not scaled) for the domain to stop; True if it did."""
        deadline = time.monotonic() + seconds
        while self.is_running():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)  # a cheap libvirt call; the next stage waits on this one
        return True

    def destroy(self) -> None:
        """Stop QEMU at once (the transient domain disappears with it)."""
        destroy_domain(self.conn, self.name)


def destroy_domain(conn: Any, name: str) -> bool:
    """Destroy and undefine domain `name` if it exists; True if there was one."""
    libvirt = _libvirt()
    try:
        dom = conn.lookupByName(name)
    except libvirt.libvirtError:
        return False
    with contextlib.suppress(libvirt.libvirtError):
        if dom.isActive():
            dom.destroy()
    with contextlib.suppress(libvirt.libvirtError):
        if dom.isPersistent():
            flags = getattr(libvirt, "VIR_DOMAIN_UNDEFINE_NVRAM", 0)
            dom.undefineFlags(flags)
    return True


def leftover_domains(uri: str = DEFAULT_URI, prefix: str = PREFIX) -> list[str]:
    """Names of domains (running or defined) whose name starts with `prefix`."""
    conn = connect(uri)
    try:
        return sorted(d.name() for d in conn.listAllDomains() if d.name().startswith(prefix))
    finally:
        conn.close()


def remove_leftovers(uri: str = DEFAULT_URI, prefix: str = PREFIX) -> list[str]:
    """Destroy and undefine every domain whose name starts with `prefix`; returns names."""
    if not prefix.startswith(PREFIX):
        raise InputError(f"refusing to remove domains not named {PREFIX}*: prefix {prefix!r}")
    conn = connect(uri)
    try:
        names = sorted(d.name() for d in conn.listAllDomains() if d.name().startswith(prefix))
        for name in names:
            destroy_domain(conn, name)
        return names
    finally:
        conn.close()


def _start(conn: Any, spec: VMSpec, make_xml: Any, user_mode: bool) -> Any:
    """Create the transient domain; with user networking retry on a port clash."""
    libvirt = _libvirt()
    attempts = PORT_ATTEMPTS if user_mode else 1
    for attempt in range(1, attempts + 1):
        xml, network = make_xml()
        try:
            return conn.createXML(xml, 0), network, xml
        except libvirt.libvirtError as exc:
            message = str(exc)
            if user_mode and is_port_clash(message) and attempt < attempts:
                events.info(f"port {network.ssh_port} was taken before QEMU bound it; retrying")
                continue
            if "already exists" in message:
                raise DomainExists(
                    f"a domain named {domain_name(spec.build_id, spec.role)} already exists",
                    hint="a previous run left it behind: vmbuild's remove_leftovers() clears it",
                ) from exc
            raise BuildError(f"libvirt could not start the VM: {message}") from exc
    raise AssertionError("unreachable")


@contextlib.contextmanager
def launch(spec: VMSpec) -> Iterator[Machine]:
    """Start a VM for `spec`; destroyed on exit (kept on error with `keep_on_error`)."""
    name = domain_name(spec.build_id, spec.role)
    net_config = from_config(spec.network)
    accel = (
        spec.accelerator
        if isinstance(spec.accelerator, Accelerator)
        else accel_mod.select(spec.accelerator)
    )
    disk = Path(spec.disk).resolve()
    if not disk.exists():
        raise InputError(f"VM disk not found: {disk}")
    files = Path(spec.workdir).resolve() / name
    console_log = Path(spec.console_log).resolve()
    console_log.parent.mkdir(parents=True, exist_ok=True)
    mac = random_mac()

    with contextlib.ExitStack() as stack:
        stack.enter_context(interruptible())
        files.mkdir(parents=True, exist_ok=True, mode=0o700)
        files.chmod(0o700)  # holds private keys
        keep_files = False

        def drop_files() -> None:
            if not keep_files:
                shutil.rmtree(files, ignore_errors=True)

        stack.callback(drop_files)

        key = spec.build_key or generate_keypair(
            files / "id_ed25519", comment=f"vmbuild-{spec.build_id}"
        )
        host_keys = generate_host_keys(("ed25519",))
        seed = write_seed(
            files / "seed.iso",
            SeedSpec(
                instance_id=f"{name}-{uuid.uuid4().hex[:12]}",
                hostname=re.sub(r"[^a-z0-9-]", "-", f"vmbuild-{spec.role}".lower())[:63],
                authorized_keys=[key.public],
                host_keys=host_keys,
                user=spec.user,
                mac=mac,
                extra_user_data=spec.extra_user_data,
                extra_source=spec.extra_user_data_source,
            ),
        )
        uefi = Uefi(nvram=files / "nvram.fd") if spec.uefi else None
        user_mode = net_config["mode"] == "user"

        def make_xml() -> tuple[str, UserNetwork | LibvirtNetwork]:
            network: UserNetwork | LibvirtNetwork = (
                replace(UserNetwork.with_ssh(free_port(), mac=mac),
                        pci_bus="pcie.0" if spec.machine == "q35" else "pci.0") if user_mode
                else LibvirtNetwork(net_config["name"], mac)
            )  # fmt: skip
            dspec = DomainSpec(
                name=name, disk=disk, accel=accel, console_log=console_log, network=network,
                seed=seed, memory_mib=spec.memory_mib, vcpus=spec.vcpus, uefi=uefi,
                run_as_root=wants_root_seclabel(spec.uri), extra_disks=spec.extra_disks,
                description=f"vmbuild {spec.role} VM of build {spec.build_id}",
                machine=spec.machine,
            )  # fmt: skip
            return domain_xml(dspec), network

        conn = connect(spec.uri)
        stack.callback(conn.close)
        keep = False

        def cleanup() -> None:
            if not keep:
                destroy_domain(conn, name)

        # Registered before the start, so an interrupt right after createXML still cleans up.
        stack.callback(cleanup)
        try:
            domain, network, xml = _start(conn, spec, make_xml, user_mode)
        except DomainExists:
            keep = True  # not ours: never destroy another run's VM
            raise
        known_hosts = files / "known_hosts"
        publics = [k.public for k in host_keys]
        if isinstance(network, UserNetwork):
            write_known_hosts(known_hosts, LOOPBACK, network.ssh_port, publics)
        machine = Machine(spec, conn, domain, accel, network, key, known_hosts, publics, files)
        machine.enable_power_cycle(xml, make_xml)
        events.info(
            f"{name}: started ({accel.name}, cpu {accel.cpu_model or accel.cpu_mode}); "
            f"host key {fingerprint(publics[0])}; console: {console_log}",
            domain=name, accelerator=accel.name,
            ssh_port=machine.ssh_port if user_mode else None,
        )  # fmt: skip
        try:
            yield machine
        except BaseException:
            if spec.keep_on_error and machine.is_running():
                keep = keep_files = True
                hint = machine.ssh_command() if machine._address else f"virsh console {name}"
                events.warn(f"{name}: kept running for debugging; get in with: {hint}",
                            domain=name, ssh=hint)  # fmt: skip
            raise

"""SSH to a guest with paramiko: wait for it, run commands with live output, copy files
as tar streams.

The host key is always verified against a pinned known_hosts file (the key vmbuild
generated and injected through the seed); paramiko's RejectPolicy refuses any
other key. While waiting for a booting guest a wrong key is not accepted, only
retried (early in boot a stale key may answer); if it never changes the timeout
error says so with both fingerprints.
"""

from __future__ import annotations

import codecs
import contextlib
import io
import logging
import select
import shlex
import socket
import tarfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, NamedTuple, cast

import paramiko

from vmbuild.errors import BuildError
from vmbuild.keys import fingerprint

StreamCallback = Callable[[str, str], None]  # (line without newline, "stdout" | "stderr")

# paramiko's transport thread logs every refused attempt with a traceback; while a guest
# boots that is noise, and real failures reach the caller as exceptions anyway.
_TRANSPORT_LOG = "vmbuild.ssh.transport"
logging.getLogger(_TRANSPORT_LOG).setLevel(logging.CRITICAL)


class SSHError(BuildError):
    """SSH to the guest failed."""


class HostKeyMismatch(SSHError):
    """The guest offered a host key other than the pinned one."""


class SSHTimeout(SSHError):
    """A wait for the guest (banner, login, command) ran out of time."""


class ConnectionLost(SSHError):
    """The connection dropped while a command ran (reboot, crash)."""


@dataclass(frozen=True)
class Target:
    """Where and how to log in."""

    host: str
    port: int
    user: str
    key: Path
    known_hosts: Path

    def command(self) -> str:
        """The `ssh` command line a user can paste to get in."""
        return shlex.join(
            [
                "ssh", "-i", str(self.key), "-p", str(self.port),
                "-o", f"UserKnownHostsFile={self.known_hosts}",
                "-o", "StrictHostKeyChecking=yes", "-o", "IdentitiesOnly=yes",
                f"{self.user}@{self.host}",
            ]
        )  # fmt: skip


class RunResult(NamedTuple):
    exit_code: int
    stdout: str
    stderr: str


def open_banner(
    host: str, port: int, *, timeout: float = 5.0
) -> tuple[socket.socket, bytes] | None:
    """A connected socket and the SSH identification line if sshd answers on host:port,
    else None. The line is only peeked at, so the socket can carry the SSH session
    (`Session.wait(sock=...)`): the guest's sshd forks for one connection, not two.

    A TCP connect alone proves nothing under user-mode networking: QEMU accepts
    on the forwarded port before the guest's sshd runs, then drops the connection.
    """
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError:
        return None
    try:
        sock.settimeout(timeout)
        deadline = time.monotonic() + timeout
        data = b""
        while b"\n" not in data and len(data) < 256 and time.monotonic() < deadline:
            peeked = sock.recv(256, socket.MSG_PEEK)
            if len(peeked) == len(data):  # closed, or nothing new yet
                if not peeked:
                    break
                time.sleep(0.01)
            data = peeked
    except OSError:
        data = b""
    if data.startswith(b"SSH-"):
        return sock, data
    sock.close()
    return None


def wait_for_banner(
    host: str, port: int, *, timeout: float, check: Callable[[], None] | None = None
) -> socket.socket:
    """Wait until sshd answers on host:port; returns that connection (for `Session.wait`)
    or raises SSHTimeout."""
    deadline = time.monotonic() + timeout
    while True:
        if check:
            check()
        opened = open_banner(host, port, timeout=min(5.0, max(0.5, deadline - time.monotonic())))
        if opened is not None:
            return opened[0]
        if time.monotonic() >= deadline:
            raise SSHTimeout(f"sshd did not answer on {host}:{port} within {timeout:.0f}s")
        time.sleep(0.25)


class _LineSplitter:
    """Bytes in, complete decoded lines out (UTF-8, invalid bytes replaced)."""

    def __init__(self, name: str, callback: StreamCallback | None) -> None:
        self.name = name
        self.callback = callback
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.pending = ""
        self.chunks: list[str] = []

    def feed(self, data: bytes, final: bool = False) -> None:
        text = self.decoder.decode(data, final)
        self.chunks.append(text)
        if self.callback is None:
            return
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        if final and self.pending:
            lines.append(self.pending)
            self.pending = ""
        for line in lines:
            self.callback(line.rstrip("\r"), self.name)

    def text(self) -> str:
        return "".join(self.chunks)


def tree_files(folder: Path, prefix: str = "") -> dict[str, Path]:
    """The files under `folder` by relative name (with `prefix`), for `Session.put_files`."""
    return {
        prefix + path.relative_to(folder).as_posix(): path
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


class _ChannelWriter:
    """The write() end tarfile's stream mode needs, onto an SSH channel's stdin."""

    def __init__(self, chan: paramiko.Channel) -> None:
        self.chan = chan

    def write(self, data: bytes) -> int:
        self.chan.sendall(data)
        return len(data)


class Session:
    """A logged-in SSH connection to a guest."""

    def __init__(self, target: Target, client: paramiko.SSHClient) -> None:
        self.target = target
        self._client = client

    # -- connecting ---------------------------------------------------------

    @staticmethod
    def _open(
        target: Target, timeout: float, sock: socket.socket | None = None
    ) -> paramiko.SSHClient:
        client = paramiko.SSHClient()
        client.set_log_channel(_TRANSPORT_LOG)
        client.get_host_keys().load(str(target.known_hosts))
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            client.connect(
                target.host, target.port, username=target.user,
                pkey=paramiko.PKey.from_path(target.key), timeout=timeout,
                banner_timeout=timeout, auth_timeout=timeout, channel_timeout=timeout,
                allow_agent=False, look_for_keys=False, sock=sock,
            )  # fmt: skip
        except paramiko.BadHostKeyException as exc:
            client.close()
            offered = fingerprint(f"{exc.key.get_name()} {exc.key.get_base64()}")
            pinned = fingerprint(f"{exc.expected_key.get_name()} {exc.expected_key.get_base64()}")
            raise HostKeyMismatch(
                f"SSH host key of {target.host}:{target.port} does not match the pinned key: "
                f"offered {offered}, pinned {pinned}",
                hint="another machine answered on this port, or the guest's host key changed",
            ) from exc
        except paramiko.AuthenticationException as exc:
            client.close()
            raise SSHError(f"SSH login as {target.user} refused: {exc}") from exc
        except paramiko.SSHException as exc:
            client.close()
            if "not found in known_hosts" in str(exc):
                raise HostKeyMismatch(
                    f"SSH host key of {target.host}:{target.port} is of a type not pinned "
                    f"in {target.known_hosts}: {exc}"
                ) from exc
            raise SSHError(f"SSH to {target.host}:{target.port} failed: {exc}") from exc
        except (OSError, EOFError) as exc:
            client.close()
            raise SSHError(f"SSH to {target.host}:{target.port} failed: {exc}") from exc
        transport = client.get_transport()
        if transport is not None:
            transport.set_keepalive(15)
        return client

    @classmethod
    def connect(
        cls, target: Target, *, timeout: float = 20.0, sock: socket.socket | None = None
    ) -> Session:
        """One attempt to log in (over `sock` if given); raises HostKeyMismatch or SSHError."""
        return cls(target, cls._open(target, timeout, sock))

    @classmethod
    def wait(
        cls,
        target: Target,
        *,
        timeout: float,
        check: Callable[[], None] | None = None,
        sock: socket.socket | None = None,
    ) -> Session:
        """Log in, retrying until `timeout`; `check` raises if the guest died meanwhile.
        `sock`, a connection from `wait_for_banner`, serves the first attempt."""
        deadline = time.monotonic() + timeout
        last: SSHError | None = None
        while True:
            if check:
                check()
            remaining = deadline - time.monotonic()
            if sock is None:
                opened = open_banner(target.host, target.port,
                                     timeout=max(1.0, min(10.0, remaining)))  # fmt: skip
                sock = opened[0] if opened else None
            if sock is not None:
                try:
                    return cls.connect(target, timeout=max(5.0, min(30.0, remaining)), sock=sock)
                except SSHError as exc:  # HostKeyMismatch too: retried, never accepted
                    last = exc
                finally:
                    sock = None
            else:
                last = SSHError(f"sshd does not answer on {target.host}:{target.port} yet")
            if time.monotonic() >= deadline:
                message = (
                    f"SSH login to {target.host}:{target.port} "
                    f"did not succeed within {timeout:.0f}s"
                )
                if last is not None:
                    message += f" (last error: {last.message})"
                raise SSHTimeout(message, hint=last.hint if last else None)
            time.sleep(0.5)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    @property
    def transport(self) -> paramiko.Transport:
        transport = self._client.get_transport()
        if transport is None or not transport.is_active():
            raise ConnectionLost(
                f"SSH connection to {self.target.host}:{self.target.port} is closed"
            )
        return transport

    def adopt(self, other: Session) -> None:
        """Take over `other`'s connection (after a reboot), so callers keep this object."""
        self.close()
        self._client = other._client
        self.target = other.target

    def is_active(self) -> bool:
        transport = self._client.get_transport()
        return transport is not None and transport.is_active()

    def ssh_command(self) -> str:
        return self.target.command()

    # -- commands -----------------------------------------------------------

    def run(
        self,
        cmd: str,
        *,
        stream: StreamCallback | None = None,
        timeout: float | None = None,
        input: str | bytes | Callable[[], bytes] | None = None,
        check: bool = False,
        get_pty: bool = False,
    ) -> RunResult:
        """Run `cmd` in the guest's shell; returns (exit_code, stdout, stderr).

        `input` is the command's standard input; a function giving it is called once
        the command has started, so it may wait (a gate), and an exception it raises
        closes the channel and reaches the caller. `stream(line, "stdout"|"stderr")`
        gets each line as it arrives. After `timeout` seconds the command's channel is
        closed and SSHTimeout raised. With `check`, a non-zero exit raises SSHError
        carrying the stderr tail.
        """
        out = _LineSplitter("stdout", stream)
        err = _LineSplitter("stderr", stream)

        def send(chan: paramiko.Channel) -> None:
            data = input() if callable(input) else input
            with contextlib.suppress(OSError):  # the command exited without reading it all
                chan.sendall(data.encode() if isinstance(data, str) else data or b"")

        code = self._exec(cmd, send=None if input is None else send, stdout=out.feed,
                          stderr=err.feed, timeout=timeout, get_pty=get_pty)  # fmt: skip
        out.feed(b"", final=True)
        err.feed(b"", final=True)
        result = RunResult(code, out.text(), err.text())
        if check and code != 0:
            tail = "\n".join(result.stderr.strip().splitlines()[-15:])
            raise SSHError(f"guest command failed (exit {code}): {cmd}\n{tail}".rstrip())
        return result

    def _exec(
        self,
        cmd: str,
        *,
        send: Callable[[paramiko.Channel], None] | None,
        stdout: Callable[[bytes], None],
        stderr: Callable[[bytes], None],
        timeout: float | None,
        get_pty: bool = False,
    ) -> int:
        """Run `cmd` on a new channel: `send(chan)` writes its standard input, then the
        output goes to the callbacks as it arrives; returns the exit status."""
        try:
            chan = self.transport.open_session()
        except paramiko.SSHException as exc:
            raise ConnectionLost(f"cannot open an SSH channel: {exc}") from exc
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            if get_pty:
                chan.get_pty()
            chan.exec_command(cmd)
            if send is not None:
                send(chan)
            chan.shutdown_write()
            while True:
                if chan.recv_ready():
                    stdout(chan.recv(65536))
                    continue
                if chan.recv_stderr_ready():
                    stderr(chan.recv_stderr(65536))
                    continue
                if chan.exit_status_ready() or chan.closed or chan.eof_received:
                    if not (chan.recv_ready() or chan.recv_stderr_ready()):
                        break
                    continue
                if deadline is not None and time.monotonic() >= deadline:
                    raise SSHTimeout(f"command timed out after {timeout:.0f}s: {cmd}")
                if not self.is_active():
                    raise ConnectionLost(f"SSH connection dropped while running: {cmd}")
                select.select([chan], [], [], 0.5)
            # EOF seen; the exit status follows unless the connection died.
            while not chan.exit_status_ready():
                if not self.is_active():
                    raise ConnectionLost(f"SSH connection dropped while running: {cmd}")
                if deadline is not None and time.monotonic() >= deadline:
                    raise SSHTimeout(f"command timed out after {timeout:.0f}s: {cmd}")
                time.sleep(0.05)
            return chan.recv_exit_status()
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise ConnectionLost(f"SSH connection failed while running {cmd}: {exc}") from exc
        finally:
            chan.close()

    def boot_id(self) -> str:
        """The guest kernel's boot id: it changes on every boot."""
        return self.run(
            "cat /proc/sys/kernel/random/boot_id", check=True, timeout=30
        ).stdout.strip()

    # -- files --------------------------------------------------------------

    def put_files(
        self, files: Mapping[str, Path], remote_dir: str, *, clean: bool = False,
        timeout: float = 600,
    ) -> int:  # fmt: skip
        """Copy local files into `remote_dir` under the relative names given, as one tar
        stream through one command (SFTP costs a round trip per file and folder).
        `clean` empties `remote_dir` first. Returns the number of files."""
        for name in files:
            if PurePosixPath(name).is_absolute() or ".." in PurePosixPath(name).parts:
                raise SSHError(f"not a relative path inside the folder: {name}")
        target = shlex.quote(remote_dir)
        cmd = (f"rm -rf {target} && " if clean else "") + (
            f"mkdir -p {target} && tar -x -f - -C {target} --no-same-owner"
        )

        def send(chan: paramiko.Channel) -> None:
            writer = cast("IO[bytes]", _ChannelWriter(chan))  # write() is all "w|" uses
            with tarfile.open(fileobj=writer, mode="w|") as tar:
                for name, local in sorted(files.items()):
                    tar.add(str(local), arcname=name, recursive=False)

        err = _LineSplitter("stderr", None)
        code = self._exec(cmd, send=send, stdout=lambda _b: None, stderr=err.feed,
                          timeout=timeout)  # fmt: skip
        err.feed(b"", final=True)
        if code != 0:
            raise SSHError(f"copying {len(files)} file(s) to {remote_dir} failed "
                           f"(exit {code}): {err.text().strip()[-800:]}")  # fmt: skip
        return len(files)

    def get_tree(self, remote_dir: str, local_dir: str | Path, *, timeout: float = 600) -> int:
        """Copy a guest folder's files into `local_dir` through one `tar -c`; returns the
        number of files (0 when the folder does not exist)."""
        folder = shlex.quote(remote_dir)
        cmd = f"if [ -d {folder} ]; then tar -c -f - -C {folder} .; fi"
        chunks: list[bytes] = []
        err = _LineSplitter("stderr", None)
        code = self._exec(cmd, send=None, stdout=chunks.append, stderr=err.feed,
                          timeout=timeout)  # fmt: skip
        err.feed(b"", final=True)
        if code != 0:
            raise SSHError(f"copying {remote_dir} from the guest failed (exit {code}): "
                           f"{err.text().strip()[-800:]}")  # fmt: skip
        data = b"".join(chunks)
        if not data:
            return 0
        local_dir = Path(local_dir)
        local_dir.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            members = [m for m in tar.getmembers() if m.isfile() or m.isdir()]
            tar.extractall(local_dir, members=members, filter="data")
        return sum(1 for m in members if m.isfile())

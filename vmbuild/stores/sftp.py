"""SFTP through paramiko, with the server's host key verified (never trusted on first use).

An upload goes to a hidden temporary name, is read back and hashed on the server
side of the connection, and only then renamed (posix-rename) to its final name;
a `<name>.sha256` sidecar records the digest so a re-run can skip identical files.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import stat as statmod
import uuid
from pathlib import Path
from typing import Any

from vmbuild.errors import BuildError
from vmbuild.stores.base import ImageRef, Item, LocalFile, Progress, Remote, Store, store_schema


class SftpStore(Store):
    TYPE = "sftp"
    LOCAL_PATHS = ("key_file", "known_hosts")
    SCHEMA = store_schema(
        TYPE,
        {
            "host": {"type": "string", "minLength": 1},
            "port": {"type": "integer", "minimum": 1, "maximum": 65535, "default": 22},
            "user": {"type": "string", "minLength": 1},
            "path": {"type": "string", "minLength": 1, "description": "remote folder"},
            "prefix": {"type": "string", "description": "sub-folder template"},
            "key_file": {"type": "string", "description": "private key for authentication"},
            "password_env": {
                "type": "string",
                "description": "name of the environment variable holding the password",
            },
            "host_key": {
                "type": "string",
                "pattern": "^[a-z0-9@.-]+ [A-Za-z0-9+/=]+$",
                "description": "the server's public host key: 'ssh-ed25519 AAAA...'",
            },
            "known_hosts": {"type": "string", "description": "known_hosts file to check against"},
            "timeout": {"type": "number", "minimum": 1, "default": 30},
        },
        required=["host", "user", "path"],
    )

    def __init__(self, config: dict[str, Any], where: str) -> None:
        super().__init__(config, where)
        self.host: str = config["host"]
        self.port: int = int(config.get("port", 22))
        self.root: str = config["path"]
        self.prefix = ""
        self._ssh: Any = None
        self._sftp: Any = None

    # -- connection ----------------------------------------------------------------------
    def _host_entry(self) -> str:
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    def _auth(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"username": self.config["user"]}
        if self.config.get("key_file"):
            key_file = Path(self.config["key_file"]).expanduser()
            if not key_file.is_file():
                raise self.error("key_file", f"{key_file} does not exist")
            kwargs.update(key_filename=str(key_file), look_for_keys=False, allow_agent=False)
        if self.config.get("password_env"):
            var = self.config["password_env"]
            if var not in os.environ:
                raise self.error("password_env", f"environment variable {var} is not set")
            kwargs.update(password=os.environ[var], look_for_keys=False, allow_agent=False)
        return kwargs

    def connect(self) -> Any:
        """The SFTP session, connecting (and checking the host key) on first use."""
        if self._sftp is not None:
            return self._sftp
        import paramiko

        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        if self.config.get("host_key"):
            entry = paramiko.hostkeys.HostKeyEntry.from_line(
                f"{self._host_entry()} {self.config['host_key']}"
            )
            if entry is None or entry.key is None:
                raise self.error("host_key", "not a public key line ('ssh-ed25519 AAAA...')")
            client.get_host_keys().add(self._host_entry(), entry.key.get_name(), entry.key)
        elif self.config.get("known_hosts"):
            try:
                client.load_host_keys(str(Path(self.config["known_hosts"]).expanduser()))
            except OSError as exc:
                raise self.error("known_hosts", f"cannot read it ({exc.strerror})") from None
        else:
            client.load_system_host_keys()
        timeout = float(self.config.get("timeout", 30))
        try:
            client.connect(
                self.host, self.port, timeout=timeout, banner_timeout=timeout, **self._auth()
            )
        except paramiko.BadHostKeyException:
            client.close()
            raise self.error(
                "host_key" if self.config.get("host_key") else "known_hosts",
                f"the host key of {self._host_entry()} does not match the expected key",
                hint="the server may have been reinstalled, or someone is in between",
            ) from None
        except paramiko.AuthenticationException:
            client.close()
            field = "password_env" if self.config.get("password_env") else "key_file"
            raise self.error(
                field, f"authentication as {self.config['user']} failed on {self._host_entry()}"
            ) from None
        except OSError as exc:  # NoValidConnectionsError, timeouts, refusals
            client.close()
            raise self.error(
                "host", f"cannot reach {self.host}:{self.port} ({type(exc).__name__})"
            ) from None
        except paramiko.SSHException as exc:
            client.close()
            if "known_hosts" in str(exc):
                raise self.error(
                    "host_key",
                    f"the host key of {self._host_entry()} is not known",
                    hint="set host_key (from `ssh-keyscan`) or known_hosts",
                ) from None
            raise
        self._ssh = client
        self._sftp = client.open_sftp()
        return self._sftp

    def close(self) -> None:
        if self._ssh is not None:
            self._ssh.close()
        self._ssh = self._sftp = None

    def is_transient(self, exc: BaseException) -> bool:
        import paramiko

        transient = isinstance(exc, OSError | EOFError | paramiko.SSHException)
        if transient:
            self.close()  # the next attempt reconnects
        return transient and not isinstance(exc, paramiko.AuthenticationException)

    # -- store hooks ---------------------------------------------------------------------
    def check(self) -> None:
        sftp = self.connect()
        try:
            sftp.stat(self.root)
        except FileNotFoundError:
            self._makedirs(self.root)
        except PermissionError:
            raise self.error("path", f"{self.root} is not accessible") from None

    def items(self, files: list[LocalFile], image: ImageRef) -> list[Item]:
        self.prefix = self.render("prefix", "", image)
        return [Item(self.prefix + f.name, [f]) for f in files]

    def location(self, item: Item | None = None) -> str:
        path = posixpath.join(self.root, item.name) if item else self.root
        return f"sftp://{self.config['user']}@{self.host}:{self.port}{path}"

    def _remote(self, name: str) -> str:
        return posixpath.join(self.root, name)

    def _makedirs(self, path: str) -> None:
        sftp = self.connect()
        parts = []
        while path not in ("", "/"):
            try:
                sftp.stat(path)
                break
            except FileNotFoundError:
                parts.append(path)
                path = posixpath.dirname(path)
        for part in reversed(parts):
            try:
                sftp.mkdir(part)
            except PermissionError:
                raise self.error("path", f"cannot create {part} on the server") from None

    def _remote_sha256(self, path: str) -> tuple[int, str]:
        sftp = self.connect()
        digest = hashlib.sha256()
        size = 0
        with sftp.open(path, "rb") as fh:
            fh.prefetch()
            while chunk := fh.read(1024 * 1024):
                digest.update(chunk)
                size += len(chunk)
        return size, digest.hexdigest()

    def upload(self, item: Item) -> None:
        sftp = self.connect()
        final = self._remote(item.name)
        self._makedirs(posixpath.dirname(final))
        tmp = posixpath.join(
            posixpath.dirname(final), f".{posixpath.basename(final)}.{uuid.uuid4().hex[:8]}.part"
        )
        progress = Progress(f"{self.name}: {item.name}", item.file.size)
        sent = [0]

        def callback(done: int, _total: int) -> None:
            progress(done - sent[0])
            sent[0] = done

        try:
            with open(item.file.path, "rb") as fh:
                sftp.putfo(fh, tmp, file_size=item.file.size, callback=callback, confirm=True)
            size, sha = self._remote_sha256(tmp)
            if (size, sha) != (item.file.size, item.file.sha256):
                raise BuildError(f"{self.where}: {item.name}: read-back differs from the upload")
            sftp.posix_rename(tmp, final)
            self._write_sidecar(final, item.file.sha256)
        except BaseException:
            with contextlib.suppress(Exception):
                sftp.remove(tmp)
            raise

    def _write_sidecar(self, final: str, sha256: str) -> None:
        sftp = self.connect()
        tmp = f"{final}.sha256.{uuid.uuid4().hex[:8]}.part"
        with sftp.open(tmp, "wb") as fh:
            fh.write(f"{sha256}  {posixpath.basename(final)}\n".encode())
        sftp.posix_rename(tmp, f"{final}.sha256")

    def stat(self, item: Item) -> Remote | None:
        sftp = self.connect()
        final = self._remote(item.name)
        try:
            size = sftp.stat(final).st_size
        except FileNotFoundError:
            return None
        try:
            with sftp.open(f"{final}.sha256", "rb") as fh:
                digest = fh.read(200).decode().split()[0]
        except (FileNotFoundError, IndexError, UnicodeDecodeError):
            digest = None
        return Remote(item.name, size, digest)

    def matches(self, item: Item, remote: Remote) -> bool:
        return remote.size == item.file.size and remote.digest == item.file.sha256

    def list(self) -> list[Remote]:
        sftp = self.connect()
        out: list[Remote] = []
        pending = [""]
        while pending:
            rel = pending.pop()
            try:
                entries = sftp.listdir_attr(posixpath.join(self.root, rel))
            except FileNotFoundError:
                continue
            for entry in entries:
                name = posixpath.join(rel, entry.filename) if rel else entry.filename
                if statmod.S_ISDIR(entry.st_mode or 0):
                    pending.append(name)
                elif not entry.filename.endswith((".part", ".sha256")):
                    out.append(Remote(name, entry.st_size))
        return sorted(out, key=lambda r: r.name)

    def delete(self, name: str) -> None:
        sftp = self.connect()
        for path in (self._remote(name), self._remote(name) + ".sha256"):
            with contextlib.suppress(FileNotFoundError):
                sftp.remove(path)

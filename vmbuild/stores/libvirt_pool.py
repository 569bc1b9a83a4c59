"""A libvirt storage pool volume, uploaded sparsely through the libvirt stream API.

libvirt volumes cannot be renamed, so the volume is created under its final name
and deleted again on any failure (the cleanup is registered as soon as it exists);
after the upload it is downloaded back (sparsely) and hashed before it counts as
verified. Holes in the source (a raw disk is mostly holes) are sent as holes.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
from typing import Any
from xml.sax.saxutils import escape

from vmbuild.errors import BuildError
from vmbuild.stores.base import ImageRef, Item, LocalFile, Progress, Remote, Store, store_schema

ZEROS = bytes(1024 * 1024)


def _hole_handler(fd: int) -> Any:
    def handler(_stream: Any, _opaque: Any) -> list[Any]:
        cur = os.lseek(fd, 0, os.SEEK_CUR)
        end = os.fstat(fd).st_size
        if cur >= end:
            return [False, 0]  # sparseSendAll stops on an empty read
        try:
            data = os.lseek(fd, cur, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno != errno.ENXIO:
                raise
            data = end
        if data > cur:
            in_data, length = False, data - cur
        else:
            in_data, length = True, os.lseek(fd, cur, os.SEEK_HOLE) - cur
        os.lseek(fd, cur, os.SEEK_SET)  # the handler only looks; send/skip move
        return [in_data, length]

    return handler


class LibvirtPoolStore(Store):
    TYPE = "libvirt-pool"
    ACCEPTS = ("qcow2", "raw")
    SCHEMA = store_schema(
        TYPE,
        {
            "pool": {"type": "string", "minLength": 1},
            "uri": {"type": "string", "default": "qemu:///system"},
            "volume": {
                "type": "string",
                "description": "volume name template (default: the output's file name)",
            },
        },
        required=["pool"],
    )

    def __init__(self, config: dict[str, Any], where: str) -> None:
        super().__init__(config, where)
        self.uri: str = config.get("uri", "qemu:///system")
        self.pool_name: str = config["pool"]
        self._conn: Any = None
        self._pool: Any = None

    @property
    def pool(self) -> Any:
        if self._pool is None:
            import libvirt

            # libvirt prints every error to stderr by default; ours are raised instead.
            libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
            try:
                self._conn = libvirt.open(self.uri)
            except libvirt.libvirtError as exc:
                raise self.error("uri", f"cannot connect to {self.uri} ({exc})") from None
            try:
                pool = self._conn.storagePoolLookupByName(self.pool_name)
            except libvirt.libvirtError:
                raise self.error(
                    "pool", f"no storage pool {self.pool_name!r} at {self.uri}"
                ) from None
            if not pool.isActive():
                raise self.error("pool", f"storage pool {self.pool_name!r} is not active")
            pool.refresh(0)
            self._pool = pool
        return self._pool

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = self._pool = None

    def check(self) -> None:
        _ = self.pool

    def items(self, files: list[LocalFile], image: ImageRef) -> list[Item]:
        names = [self.render("volume", f.name, image, ext=f.format) for f in files]
        if len(set(names)) != len(names):
            raise self.error("volume", "the template gives every format the same name; use {ext}")
        return [Item(name, [f]) for name, f in zip(names, files, strict=True)]

    def location(self, item: Item | None = None) -> str:
        base = f"libvirt://{self.uri}#{self.pool_name}"
        return f"{base}/{item.name}" if item else base

    def _volume(self, name: str) -> Any:
        import libvirt

        try:
            return self.pool.storageVolLookupByName(name)
        except libvirt.libvirtError:
            return None

    def upload(self, item: Item) -> None:
        import libvirt

        file = item.file
        old = self._volume(item.name)
        if old is not None:
            old.delete(0)  # a different image under this name: replaced
        # Capacity is the file size: the upload writes the file's bytes verbatim.
        xml = (
            f"<volume><name>{escape(item.name)}</name><capacity>{file.size}</capacity>"
            f"<allocation>0</allocation><target><format type='{file.format}'/></target></volume>"
        )
        vol = self.pool.createXML(xml, 0)
        try:
            conn = self.pool.connect()
            stream = conn.newStream(0)
            progress = Progress(f"{self.name}: {item.name}", file.size)
            fd = os.open(file.path, os.O_RDONLY)
            try:
                vol.upload(stream, 0, file.size, libvirt.VIR_STORAGE_VOL_UPLOAD_SPARSE_STREAM)

                def send(_stream: Any, nbytes: int, _fd: int) -> bytes:
                    buf = os.read(_fd, nbytes)
                    progress(len(buf))
                    return buf

                def skip(_stream: Any, length: int, _fd: int) -> int:
                    progress(length)
                    return os.lseek(_fd, length, os.SEEK_CUR)

                stream.sparseSendAll(send, _hole_handler(fd), skip, fd)
                stream.finish()
            except BaseException:
                with contextlib.suppress(Exception):
                    stream.abort()
                raise
            finally:
                os.close(fd)
        except BaseException:
            with contextlib.suppress(Exception):
                vol.delete(0)
            raise

    def _download_sha256(self, vol: Any, size: int) -> str:
        import libvirt

        digest = hashlib.sha256()
        stream = self.pool.connect().newStream(0)
        vol.download(stream, 0, size, libvirt.VIR_STORAGE_VOL_DOWNLOAD_SPARSE_STREAM)

        def recv(_stream: Any, buf: bytes, _opaque: Any) -> int:
            digest.update(buf)
            return len(buf)

        def hole(_stream: Any, length: int, _opaque: Any) -> int:
            while length > 0:
                step = min(length, len(ZEROS))
                digest.update(ZEROS[:step])
                length -= step
            return 0

        try:
            stream.sparseRecvAll(recv, hole, None)
            stream.finish()
        except BaseException:
            with contextlib.suppress(Exception):
                stream.abort()
            raise
        return digest.hexdigest()

    def stat(self, item: Item) -> Remote | None:
        vol = self._volume(item.name)
        if vol is None:
            return None
        import libvirt

        # The physical size is the file's bytes; capacity is a qcow2's virtual size.
        _type, capacity, physical = vol.infoFlags(libvirt.VIR_STORAGE_VOL_GET_PHYSICAL)
        return Remote(item.name, int(physical), None, {"capacity": capacity})

    def matches(self, item: Item, remote: Remote) -> bool:
        if remote.size != item.file.size:
            return False
        vol = self._volume(item.name)
        return vol is not None and self._download_sha256(vol, item.file.size) == item.file.sha256

    def verify(self, item: Item) -> bool:
        remote = self.stat(item)
        if remote is None:
            raise BuildError(f"{self.where}: volume {item.name} vanished after upload")
        return self.matches(item, remote)

    def details(self, item: Item) -> dict[str, Any]:
        vol = self._volume(item.name)
        return {"volume_path": vol.path()} if vol is not None else {}

    def list(self) -> list[Remote]:
        self.pool.refresh(0)
        flags = 1  # VIR_STORAGE_VOL_GET_PHYSICAL
        return [Remote(v.name(), int(v.infoFlags(flags)[2])) for v in self.pool.listAllVolumes(0)]

    def delete(self, name: str) -> None:
        vol = self._volume(name)
        if vol is not None:
            vol.delete(0)

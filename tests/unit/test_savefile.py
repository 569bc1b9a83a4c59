"""libvirt save images: header parsing and rewriting keeps the migration stream intact."""

from __future__ import annotations

import os

import pytest

from vmbuild.vm import savefile


def make_image(path, xml: str, stream: bytes, *, cookie: bytes = b"<cookie/>\0") -> None:
    xml_bytes = xml.encode() + b"\0"
    data = xml_bytes + cookie + b"\0" * 300
    header = savefile.HEADER.pack(savefile.MAGIC, 2, len(data), 1, 0, len(xml_bytes),
                                  *([0] * 14))  # fmt: skip
    path.write_bytes(header + data + stream)


def test_read_and_retarget_round_trip(tmp_path):
    stream = os.urandom(3 * 1024 * 1024 + 17)
    src = tmp_path / "state.sav"
    make_image(src, "<domain><name>old</name></domain>", stream)
    image = savefile.read(src)
    assert image.xml == "<domain><name>old</name></domain>"
    assert image.cookie == b"<cookie/>\0"
    assert image.was_running == 1
    new_xml = "<domain><name>" + "n" * 5000 + "</name></domain>"
    dest = savefile.write(image, new_xml, tmp_path / "copy.sav")
    copy = savefile.read(dest)
    assert copy.xml == new_xml
    assert copy.cookie == image.cookie
    assert copy.was_running == 1
    assert dest.read_bytes()[copy.stream_offset :] == stream
    assert (copy.stream_offset - savefile.HEADER.size) % 1024 == 0


@pytest.mark.parametrize(
    "content, message",
    [
        (b"short", "too short"),
        (b"X" * 200, "not a libvirt QEMU save image"),
        (savefile.HEADER.pack(savefile.PARTIAL, 2, 0, 0, 0, 0, *([0] * 14)), "incomplete"),
        (savefile.HEADER.pack(savefile.MAGIC, 9, 0, 0, 0, 0, *([0] * 14)), "version 9"),
        (savefile.HEADER.pack(savefile.MAGIC, 2, 4096, 0, 0, 0, *([0] * 14)) + b"x", "truncated"),
    ],
)
def test_bad_images_are_refused(tmp_path, content, message):
    path = tmp_path / "bad.sav"
    path.write_bytes(content)
    with pytest.raises(savefile.SaveFileError, match=message):
        savefile.read(path)


def test_image_without_stream_is_refused(tmp_path):
    path = tmp_path / "nostream.sav"
    make_image(path, "<domain/>", b"")
    with pytest.raises(savefile.SaveFileError, match="no migration stream"):
        savefile.read(path)

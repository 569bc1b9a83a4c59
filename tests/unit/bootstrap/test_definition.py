"""Definition validation: errors name the file, the line and the field."""

from pathlib import Path

import pytest

from vmbuild.bootstrap.definition import load_definition, parse_size
from vmbuild.errors import InputError

REPO = Path(__file__).resolve().parents[3]
MINIMAL = """\
distribution: debian
release: bookworm
packages:
  - openssh-server
  - cloud-init
"""


def _load(tmp_path: Path, text: str):
    path = tmp_path / "def.yml"
    path.write_text(text)
    return path, load_definition(path)


def _error(tmp_path: Path, text: str) -> tuple[Path, str]:
    path = tmp_path / "def.yml"
    path.write_text(text)
    with pytest.raises(InputError) as err:
        load_definition(path)
    assert err.value.exit_code == 2
    return path, err.value.message


def test_shipped_debian_12_definition_is_valid():
    d = load_definition(REPO / "images" / "base" / "debian-12.yml")
    assert (d.distribution, d.release, d.architecture) == ("debian", "bookworm", "amd64")
    for pkg in ("cloud-init", "openssh-server", "linux-image-cloud-amd64", "python3-cffi-backend"):
        assert pkg in d.packages
    assert d.cloud_init["datasource_list"] == ["NoCloud", "None"]
    assert "console=ttyS0" in d.kernel_cmdline


def test_defaults(tmp_path):
    _, d = _load(tmp_path, MINIMAL)
    assert d.disk_size == 4 << 30
    assert d.filesystem == "ext4"
    assert d.name == "debian-bookworm"


def test_unknown_field_names_line_and_field(tmp_path):
    path, message = _error(tmp_path, MINIMAL + "disk:\n  size: 2G\n  fs: xfs\n")
    assert message.startswith(f"{path}:8: disk.fs: unknown field")


def test_wrong_type_in_list_names_the_item(tmp_path):
    path, message = _error(tmp_path, MINIMAL + "  - 42\n")
    assert message.startswith(f"{path}:6: packages[2]:")


def test_missing_required_field(tmp_path):
    path, message = _error(tmp_path, "distribution: debian\npackages: [a]\n")
    assert message.startswith(f"{path}:1: (top level): 'release' is a required property")


def test_unsupported_distribution_value(tmp_path):
    path, message = _error(tmp_path, MINIMAL.replace("debian", "gentoo"))
    assert message.startswith(f"{path}:1: distribution:")
    assert "gentoo" in message


def test_bad_disk_size(tmp_path):
    path, message = _error(tmp_path, MINIMAL + "disk:\n  size: lots\n")
    assert message.startswith(f"{path}:7: disk.size: not a size")
    _, message = _error(tmp_path, MINIMAL + "disk:\n  size: 100M\n")
    assert "at least 512M" in message


def test_yaml_syntax_error_names_line(tmp_path):
    path, message = _error(tmp_path, MINIMAL + "bootloader: [unclosed\n")
    assert message.startswith(f"{path}:7: not valid YAML")


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="cannot read definition"):
        load_definition(tmp_path / "nope.yml")


@pytest.mark.parametrize(("text", "size"), [("4G", 4 << 30), ("512MiB", 512 << 20), (1024, 1024)])
def test_parse_size(text, size):
    assert parse_size(text) == size

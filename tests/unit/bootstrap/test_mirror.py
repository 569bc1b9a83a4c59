"""Mirror discovery reads one-line and deb822 apt sources and skips the security archive."""

from pathlib import Path

import pytest

from vmbuild.bootstrap.mirror import ENV_VAR, host_sources, mirror_from_sources, resolve_mirror
from vmbuild.errors import InputError

DEB822 = """\
Types: deb
# a comment inside the stanza
URIs: http://mirror.test/debian-security
Suites: bookworm-security
Components: main

Types: deb deb-src
URIs: http://mirror.test/debian/
Suites: bookworm bookworm-updates
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""


def _etc(tmp_path: Path, sources_list: str = "", parts: dict[str, str] | None = None) -> Path:
    etc = tmp_path / "apt"
    (etc / "sources.list.d").mkdir(parents=True)
    if sources_list:
        (etc / "sources.list").write_text(sources_list)
    for name, text in (parts or {}).items():
        (etc / "sources.list.d" / name).write_text(text)
    return etc


def test_deb822_picks_main_archive_not_security(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    etc = _etc(tmp_path, parts={"debian.sources": DEB822})
    assert resolve_mirror("bookworm", etc_apt=etc) == "http://mirror.test/debian"


def test_one_line_format_with_options(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    etc = _etc(
        tmp_path,
        "# deb http://commented.test/debian bookworm main\n"
        "deb [signed-by=/k.gpg] http://security.test/debian-security bookworm-security main\n"
        "deb-src http://src.test/debian bookworm main\n"
        "deb [arch=amd64] http://one.test/debian bookworm main\n",
    )
    assert resolve_mirror("bookworm", etc_apt=etc) == "http://one.test/debian"


def test_disabled_stanza_and_other_suffixes_are_ignored(tmp_path):
    etc = _etc(
        tmp_path,
        parts={
            "a.sources": "Enabled: no\nTypes: deb\nURIs: http://off.test/d\nSuites: bookworm\n",
            "b.list.disabled": "deb http://ignored.test/d bookworm main\n",
            "c.list": "deb http://other.test/ubuntu jammy main\n",
        },
    )
    assert [s.uri for s in host_sources(etc)] == ["http://other.test/ubuntu"]
    assert mirror_from_sources("bookworm", host_sources(etc)) is None


def test_flag_and_environment_override(tmp_path, monkeypatch):
    etc = _etc(tmp_path, parts={"debian.sources": DEB822})
    monkeypatch.setenv(ENV_VAR, "http://env.test/debian/")
    assert resolve_mirror("bookworm", etc_apt=etc) == "http://env.test/debian"
    assert resolve_mirror("bookworm", "http://flag.test/d", etc_apt=etc) == "http://flag.test/d"


def test_no_source_is_an_input_error_with_hint(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    etc = _etc(tmp_path, parts={"debian.sources": DEB822})
    with pytest.raises(InputError) as err:
        resolve_mirror("trixie", etc_apt=etc)
    assert "trixie" in err.value.message
    assert "--mirror" in (err.value.hint or "")
    assert err.value.exit_code == 2


def test_bad_override_url_is_rejected(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    with pytest.raises(InputError, match="not an http"):
        resolve_mirror("bookworm", "ftp.test/debian")

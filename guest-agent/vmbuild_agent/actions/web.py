"""WebDownload: HTTP(S) downloads with checksum checks and retries."""

from __future__ import annotations

import hashlib
import os
import time
import urllib.parse
from typing import Any

from vmbuild_agent.actions import Action, Field, as_bool, register
from vmbuild_agent.errors import StepFailed
from vmbuild_agent.fileops import atomic_write

ATTEMPTS = 3
CHUNK = 1 << 20
ALGORITHMS = {"MD5": "md5", "SHA1": "sha1", "SHA256": "sha256", "SHA512": "sha512"}


class _Retryable(Exception):
    pass


def target_path(destination: str, url_path: str) -> str:
    """A destination that is a folder (or ends with /) receives the URL's file name."""
    if destination.endswith("/") or os.path.isdir(destination):
        name = os.path.basename(urllib.parse.unquote(url_path)) or "index.html"
        return os.path.join(destination, name)
    return destination


def fetch(
    url: str,
    dest: str,
    ctx: Any,
    algorithm: str | None = None,
    insecure: bool = False,
    headers: dict | None = None,
) -> str:
    """Stream `url` into `dest` atomically; returns the hex digest when `algorithm` is set."""
    # Imported here: ssl and urllib.request cost ~0.1 s, and `validate` must stay quick.
    import ssl
    import urllib.error
    import urllib.request

    context = None
    if insecure and url.startswith("https:"):
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    request = urllib.request.Request(url, headers=headers or {})
    timeout = 60.0
    if ctx.deadline is not None:
        timeout = max(1.0, min(timeout, ctx.deadline - time.monotonic()))
    digest = hashlib.new(algorithm) if algorithm else None
    try:
        with (
            urllib.request.urlopen(request, timeout=timeout, context=context) as resp,
            atomic_write(dest) as out,
        ):
            while True:
                ctx.check_deadline()
                chunk = resp.read(CHUNK)
                if not chunk:
                    break
                out.write(chunk)
                if digest is not None:
                    digest.update(chunk)
    except urllib.error.HTTPError as exc:
        if exc.code >= 500 or exc.code == 429:
            raise _Retryable(f"HTTP {exc.code} {exc.reason}") from None
        raise StepFailed(f"WebDownload: {url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise _Retryable(str(reason)) from None
    return digest.hexdigest() if digest is not None else ""


@register
class WebDownload(Action):
    """Downloads `source` to `destination`; output `destination` (the file written)."""

    name = "WebDownload"
    fields = {
        "source": Field("string", required=True),
        "destination": Field("string", required=True),
        "overwrite": Field("bool", default=True),
        "checksum": Field("string"),
        "algorithm": Field("string"),
        "ignoreCertificateErrors": Field("bool", default=False),
    }
    outputs = ("destination",)

    def check(self, inputs: Any) -> list[str]:
        problems = super().check(inputs)
        for item in self.items(inputs) or []:
            if isinstance(item, dict):
                algo = item.get("algorithm")
                if isinstance(algo, str) and "{{" not in algo and algo.upper() not in ALGORITHMS:
                    problems.append(f"WebDownload algorithm must be one of {', '.join(ALGORITHMS)}")
                if algo and not item.get("checksum"):
                    problems.append("WebDownload: 'algorithm' needs a 'checksum'")
        return problems

    def run_item(self, item: dict, ctx: Any) -> str:
        url = str(item["source"])
        parsed = urllib.parse.urlparse(url)
        if parsed.scheme not in ("http", "https"):
            raise StepFailed(f"WebDownload: source must be an http(s) URL: {url}")
        dest = target_path(str(item["destination"]), parsed.path)
        if os.path.exists(dest) and not as_bool(item["overwrite"], True):
            raise StepFailed(f"WebDownload: {dest} exists and overwrite is false")
        checksum = str(item["checksum"]).strip().lower() if item.get("checksum") else None
        algorithm = ALGORITHMS[str(item.get("algorithm") or "SHA256").upper()] if checksum else None
        last = ""
        for attempt in range(1, ATTEMPTS + 1):
            try:
                actual = fetch(url, dest, ctx, algorithm, as_bool(item["ignoreCertificateErrors"]))
                break
            except _Retryable as exc:
                last = str(exc)
                if attempt < ATTEMPTS:
                    ctx.output(f"WebDownload: {url}: {last}; retrying ({attempt}/{ATTEMPTS})")
                    time.sleep(min(2 ** (attempt - 1), 4))
        else:
            raise StepFailed(f"WebDownload: {url}: {last} (after {ATTEMPTS} attempts)")
        if checksum and actual != checksum:
            os.unlink(dest)
            raise StepFailed(
                f"WebDownload: {url}: {algorithm} checksum mismatch "
                f"(expected {checksum}, got {actual}); {dest} removed"
            )
        return dest

    def combine(self, results: list) -> dict:
        return {"destination": results[0] if len(results) == 1 else results}

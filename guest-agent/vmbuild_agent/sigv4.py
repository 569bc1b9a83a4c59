"""A small S3 client on the stdlib: AWS Signature Version 4, get/put/list, multipart upload.

Credentials come from the usual AWS sources (environment, then ~/.aws/credentials with
AWS_PROFILE); the endpoint from AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL or the profile's
`endpoint_url` (path-style addressing). Secrets never reach a message or a log.
"""

from __future__ import annotations

import configparser
import contextlib
import datetime
import hashlib
import hmac
import os
import time
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Callable

from vmbuild_agent.errors import StepFailed

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
PART_SIZE = 8 * 1024 * 1024
_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str
    token: str | None = None


def _ini(path: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser()
    parser.read(os.path.expanduser(path))
    return parser


def _profile() -> str:
    return os.environ.get("AWS_PROFILE") or os.environ.get("AWS_DEFAULT_PROFILE") or "default"


def _config_value(key: str) -> str | None:
    config = _ini(os.environ.get("AWS_CONFIG_FILE", "~/.aws/config"))
    profile = _profile()
    section = profile if profile == "default" else f"profile {profile}"
    if config.has_option(section, key):
        return config.get(section, key)
    return None


def credentials() -> Credentials:
    env = os.environ
    if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
        return Credentials(
            env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"], env.get("AWS_SESSION_TOKEN")
        )
    shared = _ini(env.get("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials"))
    profile = _profile()
    if shared.has_option(profile, "aws_access_key_id"):
        return Credentials(
            shared.get(profile, "aws_access_key_id"),
            shared.get(profile, "aws_secret_access_key"),
            shared.get(profile, "aws_session_token", fallback=None),
        )
    raise StepFailed(
        "no AWS credentials: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY "
        f"or a [{profile}] profile in ~/.aws/credentials"
    )


def region() -> str:
    return (
        os.environ.get("AWS_REGION")
        or os.environ.get("AWS_DEFAULT_REGION")
        or _config_value("region")
        or "us-east-1"
    )


def endpoint() -> str:
    found = (
        os.environ.get("AWS_ENDPOINT_URL_S3")
        or os.environ.get("AWS_ENDPOINT_URL")
        or _config_value("endpoint_url")
    )
    if not found:
        # No built-in public endpoint: builds are on-prem and addresses come from config.
        raise StepFailed(
            "no S3 endpoint: set AWS_ENDPOINT_URL_S3 (or AWS_ENDPOINT_URL, or endpoint_url "
            "in the AWS profile)"
        )
    return found.rstrip("/")


def parse_s3_url(url: str) -> tuple[str, str]:
    """('bucket', 'key') from s3://bucket/key."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise StepFailed(f"not an S3 URL (s3://bucket/key): {url}")
    return parsed.netloc, parsed.path.lstrip("/")


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def sign(
    method: str,
    url: str,
    headers: dict,
    payload_hash: str,
    creds: Credentials,
    region_name: str,
    now: datetime.datetime | None = None,
) -> dict:
    """Headers for `url` signed with SigV4 (the URL's path must already be URI-encoded)."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    datestamp = amz_date[:8]
    parsed = urllib.parse.urlsplit(url)
    signed = {k.lower(): str(v).strip() for k, v in headers.items()}
    signed["host"] = parsed.netloc
    signed["x-amz-date"] = amz_date
    signed["x-amz-content-sha256"] = payload_hash
    if creds.token:
        signed["x-amz-security-token"] = creds.token
    query = sorted(urllib.parse.parse_qsl(parsed.query, keep_blank_values=True))
    canonical_query = "&".join(
        f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}"
        for k, v in query
    )
    names = sorted(signed)
    canonical = "\n".join(
        [
            method,
            parsed.path or "/",
            canonical_query,
            "".join(f"{n}:{signed[n]}\n" for n in names),
            ";".join(names),
            payload_hash,
        ]
    )
    scope = f"{datestamp}/{region_name}/s3/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = _hmac(("AWS4" + creds.secret_key).encode(), datestamp)
    for part in (region_name, "s3", "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    signed["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={creds.access_key}/{scope}, "
        f"SignedHeaders={';'.join(names)}, Signature={signature}"
    )
    del signed["host"]  # urllib sets Host itself
    return signed


class S3Client:
    """Path-style S3 requests against one endpoint."""

    def __init__(self, expected_owner: str | None = None, deadline_check: Callable = lambda: None):
        self.creds = credentials()
        self.region = region()
        self.endpoint = endpoint()
        self.expected_owner = expected_owner
        self.deadline_check = deadline_check

    def url(self, bucket: str, key: str = "", query: dict | None = None) -> str:
        path = "/" + urllib.parse.quote(bucket, safe="") + "/" + urllib.parse.quote(key, safe="/~")
        if query:
            path += "?" + urllib.parse.urlencode(
                sorted(query.items()), quote_via=urllib.parse.quote
            )
        return self.endpoint + path

    def request(
        self,
        method: str,
        bucket: str,
        key: str = "",
        query: dict | None = None,
        body: bytes = b"",
        headers: dict | None = None,
    ) -> Any:
        import urllib.error  # lazily: see actions/web.py
        import urllib.request

        url = self.url(bucket, key, query)
        headers = dict(headers or {})
        if self.expected_owner:
            headers["x-amz-expected-bucket-owner"] = self.expected_owner
        payload = hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256
        signed = sign(method, url, headers, payload, self.creds, self.region)
        req = urllib.request.Request(url, data=body if method in ("PUT", "POST") else None,
                                     method=method, headers=signed)  # fmt: skip
        try:
            return urllib.request.urlopen(req, timeout=120)
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:2000].decode("utf-8", "replace")
            code = _xml_text(detail, "Code") or exc.reason
            message = _xml_text(detail, "Message") or ""
            where = f"s3://{bucket}/{key}"
            raise StepFailed(
                f"S3 {method} {where}: HTTP {exc.code} {code} {message}".strip()
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise StepFailed(f"S3 {method} s3://{bucket}/{key}: {reason}") from None

    def list_keys(self, bucket: str, prefix: str) -> Iterator[str]:
        token: str | None = None
        while True:
            query = {"list-type": "2", "prefix": prefix}
            if token:
                query["continuation-token"] = token
            with self.request("GET", bucket, "", query) as resp:
                root = ET.fromstring(resp.read())
            for item in root.iter(f"{_NS}Contents"):
                yield item.findtext(f"{_NS}Key") or ""
            if root.findtext(f"{_NS}IsTruncated") != "true":
                return
            token = root.findtext(f"{_NS}NextContinuationToken")

    def download(self, bucket: str, key: str, write: Callable[[bytes], None]) -> None:
        with self.request("GET", bucket, key) as resp:
            while True:
                self.deadline_check()
                chunk = resp.read(1 << 20)
                if not chunk:
                    return
                write(chunk)

    def upload(self, bucket: str, key: str, path: str, part_size: int = PART_SIZE) -> None:
        size = os.path.getsize(path)
        if size <= part_size:
            with open(path, "rb") as fh:
                self.request("PUT", bucket, key, body=fh.read()).close()
            return
        with self.request("POST", bucket, key, {"uploads": ""}) as resp:
            upload_id = ET.fromstring(resp.read()).findtext(f"{_NS}UploadId")
        if not upload_id:
            raise StepFailed(f"S3 multipart upload of s3://{bucket}/{key}: no UploadId")
        try:
            parts = []
            with open(path, "rb") as fh:
                number = 1
                while True:
                    self.deadline_check()
                    data = fh.read(part_size)
                    if not data:
                        break
                    query = {"partNumber": str(number), "uploadId": upload_id}
                    with self.request("PUT", bucket, key, query, body=data) as resp:
                        parts.append((number, resp.headers.get("ETag", "")))
                    number += 1
            body = (
                "<CompleteMultipartUpload>"
                + "".join(
                    f"<Part><PartNumber>{n}</PartNumber><ETag>{etag}</ETag></Part>"
                    for n, etag in parts
                )
                + "</CompleteMultipartUpload>"
            )
            with self.request("POST", bucket, key, {"uploadId": upload_id}, body.encode()) as resp:
                resp.read()
        except BaseException:
            # Never leave a dangling multipart upload (it is billed and invisible).
            with contextlib.suppress(StepFailed):
                self.request("DELETE", bucket, key, {"uploadId": upload_id}).close()
            raise


def _xml_text(blob: str, tag: str) -> str | None:
    try:
        root = ET.fromstring(blob)
    except ET.ParseError:
        return None
    found = root.find(tag)
    if found is None:
        found = root.find(f"{_NS}{tag}")
    return found.text if found is not None else None


def sleep_backoff(attempt: int) -> None:
    time.sleep(min(2**attempt, 4))

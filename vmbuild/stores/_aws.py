"""boto3 clients for the S3 and AMI stores, and AWS errors turned into vmbuild errors.

Credentials come from the usual AWS sources (environment, shared files, a `profile`,
instance metadata); they are never part of a store config, a message or a log line.
"""

from __future__ import annotations

from typing import Any

import botocore.exceptions
from botocore.config import Config

from vmbuild.errors import BuildError, VmbuildError

CREDENTIAL_CODES = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "AuthFailure",
    "ExpiredToken",
    "InvalidToken",
    "AccessDenied",
    "Forbidden",
    "403",
}
TRANSIENT_CODES = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "RequestTimeout",
    "InternalError",
    "ServiceUnavailable",
    "InternalServerException",
    "500",
    "502",
    "503",
    "504",
}


def session(config: dict[str, Any], store: Any) -> Any:
    import boto3

    try:
        return boto3.session.Session(
            profile_name=config.get("profile"), region_name=config.get("region")
        )
    except botocore.exceptions.ProfileNotFound:
        raise store.error("profile", f"AWS profile {config.get('profile')!r} not found") from None


def client(sess: Any, service: str, endpoint_url: str | None, region: str | None) -> Any:
    cfg = Config(
        retries={"mode": "standard", "max_attempts": 4},
        connect_timeout=10,
        read_timeout=120,
        s3={"addressing_style": "path"} if endpoint_url else None,
    )
    return sess.client(
        service, endpoint_url=endpoint_url, region_name=region or "us-east-1", config=cfg
    )


def error_code(exc: BaseException) -> str:
    if isinstance(exc, botocore.exceptions.ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def is_transient(exc: BaseException) -> bool:
    transient = (
        botocore.exceptions.ConnectionClosedError,
        botocore.exceptions.ReadTimeoutError,
        botocore.exceptions.ResponseStreamingError,
    )
    return isinstance(exc, transient) or error_code(exc) in TRANSIENT_CODES


def call(store: Any, fn: Any, *, bucket: str | None = None, **kwargs: Any) -> Any:
    """Call a boto3 operation for `store`. Transient errors propagate as they are (the
    store's retry loop handles them); anything else becomes a vmbuild error naming the
    store and field."""
    try:
        return fn(**kwargs)
    except Exception as exc:
        if is_transient(exc):
            raise
        raise translate(exc, store, endpoint_field="endpoint_url", bucket=bucket) from None


def translate(
    exc: BaseException, store: Any, *, endpoint_field: str, bucket: str | None = None
) -> VmbuildError:
    """A vmbuild error for a boto3 failure, naming the store and the field at fault."""
    if isinstance(exc, VmbuildError):
        return exc
    if isinstance(
        exc, botocore.exceptions.NoCredentialsError | botocore.exceptions.PartialCredentialsError
    ):
        return store.error(
            "profile",
            "no AWS credentials found",
            hint="set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or the store's profile",
        )
    if isinstance(
        exc,
        botocore.exceptions.EndpointConnectionError | botocore.exceptions.ConnectTimeoutError,
    ):
        url = getattr(exc, "kwargs", {}).get("endpoint_url", "")
        return store.error(endpoint_field, f"cannot reach the endpoint {url}".rstrip())
    code = error_code(exc)
    if code in CREDENTIAL_CODES:
        return store.error(
            "profile",
            f"the credentials were refused ({code})",
            hint="check the AWS credentials in the environment or the profile",
        )
    if code in ("NoSuchBucket", "404", "NotFound") and bucket:
        return store.error("bucket", f"bucket {bucket!r} does not exist")
    if isinstance(exc, botocore.exceptions.BotoCoreError | botocore.exceptions.ClientError):
        return BuildError(f"{store.where}: {type(exc).__name__}: {code or exc}")
    return BuildError(f"{store.where}: {type(exc).__name__}: {exc}")

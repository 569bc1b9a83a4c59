"""The S3 fixture is a real server: objects round-trip and a wrong secret is refused."""

import botocore.exceptions
import pytest


def test_roundtrip_and_auth(s3_server, s3_bucket):
    client = s3_server.client()
    client.put_object(Bucket=s3_bucket, Key="a/b.txt", Body=b"payload")
    assert client.get_object(Bucket=s3_bucket, Key="a/b.txt")["Body"].read() == b"payload"
    bad = type(s3_server)(s3_server.url, s3_server.access_key, "wrong-secret").client()
    with pytest.raises(botocore.exceptions.ClientError):
        bad.list_objects_v2(Bucket=s3_bucket)

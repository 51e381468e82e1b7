"""amnet.storage against a real S3 server (SeaweedFS from ``amnet.stack``), and local atomic writes."""

from __future__ import annotations

import os
import socket
import uuid
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest

from amnet import storage
from amnet.errors import AmnetError


@pytest.fixture
def prefix(s3_env) -> str:
    """A fresh ``s3://test-bucket/<uuid>`` prefix per test: tests never see each other's objects."""
    return f"s3://{s3_env.bucket}/storage-tests/{uuid.uuid4().hex}"


def test_round_trip_exists_and_list(prefix):
    assert not storage.exists(f"{prefix}/a.bin")
    assert storage.list_files(prefix) == []

    storage.write_bytes(f"{prefix}/a.bin", b"\x00\x01binary")
    storage.write_text(f"{prefix}/sub/b.json", '{"x": 1}')
    storage.write_bytes(f"{prefix}/sub/deeper/c.bin", b"c")

    assert storage.exists(f"{prefix}/a.bin")
    assert storage.read_bytes(f"{prefix}/a.bin") == b"\x00\x01binary"
    assert storage.read_text(f"{prefix}/sub/b.json") == '{"x": 1}'
    assert storage.list_files(prefix) == [f"{prefix}/a.bin", f"{prefix}/sub/b.json", f"{prefix}/sub/deeper/c.bin"]
    assert storage.list_files(prefix, suffix=".bin") == [f"{prefix}/a.bin", f"{prefix}/sub/deeper/c.bin"]
    assert storage.list_files(f"{prefix}/sub/") == [f"{prefix}/sub/b.json", f"{prefix}/sub/deeper/c.bin"]


def test_overwrite_and_large_object(prefix):
    """Objects above SeaweedFS's 4 MB chunk size come back byte for byte; a rewrite replaces the whole object."""
    big = os.urandom(9 * 1024 * 1024 + 7)
    storage.write_bytes(f"{prefix}/big.bin", big)
    assert storage.read_bytes(f"{prefix}/big.bin") == big
    storage.write_bytes(f"{prefix}/big.bin", b"small now")
    assert storage.read_bytes(f"{prefix}/big.bin") == b"small now"


def test_list_paginates_past_1000_keys(prefix, s3_env):
    """``list_files`` follows continuation tokens (S3 returns at most 1000 keys per page)."""
    client = s3_env.client()
    bucket, key = storage.split_s3(prefix)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: client.put_object(Bucket=bucket, Key=f"{key}/many/{i:05d}.txt", Body=b""),
                      range(1005)))
    files = storage.list_files(f"{prefix}/many")
    assert len(files) == 1005
    assert files[0].endswith("/00000.txt") and files[-1].endswith("/01004.txt")


def _interrupted_put(url: str, declared: int, sent: bytes) -> None:
    """Send a presigned PUT that declares ``declared`` bytes, send only ``sent``, and hang up."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        head = (f"PUT {parts.path}?{parts.query} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                f"Content-Length: {declared}\r\n\r\n")
        sock.sendall(head.encode() + sent)


def test_interrupted_upload_leaves_no_partial_object(prefix, s3_env):
    """The property ``write_bytes`` relies on: a PUT cut off half-way creates nothing under its key and
    leaves the previous version untouched; readers see the old object or the new one, never half."""
    client = s3_env.client()
    bucket, key = storage.split_s3(f"{prefix}/model.pt")
    url = client.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=60)

    _interrupted_put(url, declared=1_000_000, sent=b"x" * 1000)
    assert not storage.exists(f"{prefix}/model.pt")

    storage.write_bytes(f"{prefix}/model.pt", b"version 1")
    _interrupted_put(url, declared=1_000_000, sent=b"y" * 1000)
    assert storage.read_bytes(f"{prefix}/model.pt") == b"version 1"
    assert storage.list_files(prefix) == [f"{prefix}/model.pt"]


def test_missing_bucket_is_a_clear_error(s3_env):
    missing = f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}"
    with pytest.raises(AmnetError, match="bucket does not exist"):
        storage.read_bytes(f"{missing}/a.bin")
    with pytest.raises(AmnetError, match="bucket does not exist"):
        storage.write_bytes(f"{missing}/a.bin", b"x")  # no silent bucket creation (autoCreateBucket=false)
    with pytest.raises(AmnetError, match="bucket does not exist"):
        storage.list_files(f"{missing}/prefix")


def test_missing_object_is_a_clear_error(prefix):
    with pytest.raises(AmnetError, match="no such object"):
        storage.read_bytes(f"{prefix}/nothing-here")


def test_wrong_credentials_are_reported(prefix, monkeypatch):
    """The S3 gateway really checks signatures (the stack is not an anonymous open store)."""
    import boto3

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    storage._client.cache_clear()
    boto3.DEFAULT_SESSION = None  # it caches the credentials it resolved first
    try:
        with pytest.raises(AmnetError, match="check AWS_ENDPOINT_URL and credentials"):
            storage.write_bytes(f"{prefix}/a.bin", b"x")
    finally:
        storage._client.cache_clear()
        boto3.DEFAULT_SESSION = None


def test_local_writes_are_readable_by_other_users(tmp_path):
    """Atomic writes go through mkstemp (0600); the published file has a plain open()'s mode, so a task
    running as another uid (the image's 10001) can read what this one wrote."""
    import os

    old = os.umask(0o022)
    try:
        storage._umask.cache_clear()
        storage.write_bytes(str(tmp_path / "m.parquet"), b"x")
    finally:
        os.umask(old)
        storage._umask.cache_clear()
    assert (tmp_path / "m.parquet").stat().st_mode & 0o777 == 0o644


def test_local_atomic_write_leaves_no_temp_files(tmp_path):
    target = tmp_path / "out" / "model.pt"
    storage.write_bytes(str(target), b"first")
    storage.write_bytes(str(target), b"second")
    assert target.read_bytes() == b"second"
    assert sorted(p.name for p in target.parent.iterdir()) == ["model.pt"]


def test_local_failed_write_keeps_old_file_and_no_temp(tmp_path):
    target = tmp_path / "model.pt"
    storage.write_bytes(str(target), b"good")
    with pytest.raises(TypeError):
        storage.write_bytes(str(target), "not bytes")  # type: ignore[arg-type]  # fails inside the write
    assert target.read_bytes() == b"good"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]

"""Object operations through the official SDK, V4 and V1 (the `client` fixture is
parametrised over both)."""

import concurrent.futures
import hashlib
import os
from urllib.parse import quote, unquote

import pytest

import alibabacloud_oss_v2 as oss
from conftest import BUCKET, make_client, service_error, sts_from_metadata

ODD_KEYS = [
    "space name.txt",
    "中文/文件.txt",
    "emoji/😀🚀.bin",
    "plus+percent%hash#q?eq=amp&tilde~",
    # The SDK puts dot segments into the URL verbatim and its HTTP stack (requests /
    # urllib3) removes them, so it signs one key and addresses another; real OSS would
    # refuse these requests too. ossmount's own client joins such segments with %2F.
    pytest.param("a/../b", marks=pytest.mark.xfail(reason="SDK URL normalisation")),
    pytest.param("./dot", marks=pytest.mark.xfail(reason="SDK URL normalisation")),
    "dir//double",
    "trailing-dot.",
]


def get_bytes(client, key, **kw):
    res = client.get_object(oss.GetObjectRequest(bucket=BUCKET, key=key, **kw))
    return res, res.body.read()


def test_put_get_head(client, prefix):
    body = os.urandom(100_000)
    put = client.put_object(oss.PutObjectRequest(
        bucket=BUCKET, key=prefix + "obj", body=body, content_type="application/x-test",
        metadata={"owner": "interop"}))
    assert put.etag and put.etag.startswith('"')
    head = client.head_object(oss.HeadObjectRequest(bucket=BUCKET, key=prefix + "obj"))
    assert head.content_length == len(body)
    assert head.content_type == "application/x-test"
    assert head.metadata.get("owner") == "interop"
    assert head.etag == put.etag
    assert head.hash_crc64 == put.hash_crc64
    res, data = get_bytes(client, prefix + "obj")
    assert data == body
    # The SDK checks x-oss-hash-crc64ecma itself; check it is present and decimal.
    assert res.hash_crc64 and res.hash_crc64.isdigit()


def test_range_reads(client, prefix):
    body = bytes(range(256)) * 40
    client.put_object(oss.PutObjectRequest(bucket=BUCKET, key=prefix + "r", body=body))
    res, data = get_bytes(client, prefix + "r", range_header="bytes=10-19",
                          range_behavior="standard")
    assert data == body[10:20]
    assert res.content_range == f"bytes 10-19/{len(body)}"
    # End past EOF is truncated with standard behaviour.
    _, data = get_bytes(client, prefix + "r", range_header=f"bytes={len(body) - 5}-999999",
                        range_behavior="standard")
    assert data == body[-5:]
    with pytest.raises(oss.exceptions.OperationError) as e:
        get_bytes(client, prefix + "r", range_header=f"bytes={len(body)}-",
                  range_behavior="standard")
    assert service_error(e).status_code == 416


@pytest.mark.parametrize("key", ODD_KEYS)
def test_odd_keys_round_trip(client, prefix, key):
    full = prefix + key
    client.put_object(oss.PutObjectRequest(bucket=BUCKET, key=full, body=full.encode()))
    _, data = get_bytes(client, full)
    assert data == full.encode()
    listed = client.list_objects_v2(oss.ListObjectsV2Request(bucket=BUCKET, prefix=full))
    assert [o.key for o in listed.contents] == [full]


def test_multipart_tens_of_mib(client, prefix):
    key = prefix + "big.bin"
    part_size = 8 * 1024 * 1024
    data = os.urandom(2 * part_size + 1234567)
    init = client.initiate_multipart_upload(
        oss.InitiateMultipartUploadRequest(bucket=BUCKET, key=key))
    parts = []
    for n, off in enumerate(range(0, len(data), part_size), start=1):
        up = client.upload_part(oss.UploadPartRequest(
            bucket=BUCKET, key=key, upload_id=init.upload_id, part_number=n,
            body=data[off:off + part_size]))
        parts.append(oss.UploadPart(part_number=n, etag=up.etag))
    done = client.complete_multipart_upload(oss.CompleteMultipartUploadRequest(
        bucket=BUCKET, key=key, upload_id=init.upload_id,
        complete_multipart_upload=oss.CompleteMultipartUpload(parts=parts)))
    assert done.etag
    head = client.head_object(oss.HeadObjectRequest(bucket=BUCKET, key=key))
    assert head.content_length == len(data)
    assert head.object_type == "Multipart"
    _, got = get_bytes(client, key)
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()


def test_list_v2_pagination_with_delimiter(client, prefix):
    keys = [f"{prefix}d{i % 7}/f{i:05d}" for i in range(2100)]
    keys += [f"{prefix}top{i:03d}" for i in range(150)]
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: client.put_object(
            oss.PutObjectRequest(bucket=BUCKET, key=k, body=b"x")), keys))
    # Flat listing over pages of 1000.
    seen, token, pages = [], None, 0
    while True:
        res = client.list_objects_v2(oss.ListObjectsV2Request(
            bucket=BUCKET, prefix=prefix, max_keys=1000, continuation_token=token))
        seen += [o.key for o in res.contents]
        pages += 1
        if not res.is_truncated:
            break
        token = res.next_continuation_token
    assert seen == sorted(keys)
    assert pages == 3
    # Delimited listing: 7 common prefixes + 150 top-level keys, in pages of 50.
    objs, prefixes, token = [], [], None
    while True:
        res = client.list_objects_v2(oss.ListObjectsV2Request(
            bucket=BUCKET, prefix=prefix, delimiter="/", max_keys=50,
            continuation_token=token))
        objs += [o.key for o in res.contents]
        prefixes += [p.prefix for p in (res.common_prefixes or [])]
        assert len(res.contents) + len(res.common_prefixes or []) <= 50
        if not res.is_truncated:
            break
        token = res.next_continuation_token
    assert prefixes == [f"{prefix}d{i}/" for i in range(7)]
    assert objs == sorted(k for k in keys if "/top" in k)


def test_copy(client, prefix):
    client.put_object(oss.PutObjectRequest(bucket=BUCKET, key=prefix + "src key",
                                           body=b"copy me"))
    client.copy_object(oss.CopyObjectRequest(bucket=BUCKET, key=prefix + "dst",
                                             source_bucket=BUCKET, source_key=prefix + "src key"))
    _, data = get_bytes(client, prefix + "dst")
    assert data == b"copy me"


def test_append_and_position_errors(client, prefix):
    key = prefix + "log"
    a = client.append_object(oss.AppendObjectRequest(bucket=BUCKET, key=key, position=0,
                                                     body=b"hello "))
    assert a.next_position == 6
    b = client.append_object(oss.AppendObjectRequest(bucket=BUCKET, key=key, position=6,
                                                     body=b"world"))
    assert b.next_position == 11
    with pytest.raises(oss.exceptions.OperationError) as e:
        client.append_object(oss.AppendObjectRequest(bucket=BUCKET, key=key, position=3,
                                                     body=b"x"))
    assert service_error(e).code == "PositionNotEqualToLength"
    head = client.head_object(oss.HeadObjectRequest(bucket=BUCKET, key=key))
    assert head.object_type == "Appendable"
    assert head.hash_crc64 == b.hash_crc64
    _, data = get_bytes(client, key)
    assert data == b"hello world"


def test_symlink(client, prefix):
    client.put_object(oss.PutObjectRequest(bucket=BUCKET, key=prefix + "target file",
                                           body=b"pointed at"))
    # OSS documents the target as URL-encoded like an object name (oss2 encodes it and
    # decodes it on read); the v2 SDK passes the header through, so the caller encodes.
    client.put_symlink(oss.PutSymlinkRequest(bucket=BUCKET, key=prefix + "link",
                                             target=quote(prefix + "target file")))
    got = client.get_symlink(oss.GetSymlinkRequest(bucket=BUCKET, key=prefix + "link"))
    assert unquote(got.target) == prefix + "target file"
    _, data = get_bytes(client, prefix + "link")
    assert data == b"pointed at"


def test_delete_multiple(client, prefix):
    keys = [prefix + f"del{i}" for i in range(5)] + [prefix + "odd & <key>"]
    for k in keys:
        client.put_object(oss.PutObjectRequest(bucket=BUCKET, key=k, body=b"1"))
    res = client.delete_multiple_objects(oss.DeleteMultipleObjectsRequest(
        bucket=BUCKET, objects=[oss.DeleteObject(key=k) for k in keys]))
    assert sorted(d.key for d in res.deleted_objects) == sorted(keys)
    listed = client.list_objects_v2(oss.ListObjectsV2Request(bucket=BUCKET, prefix=prefix))
    assert not listed.contents


def test_error_cases(client, emulator, prefix, request):
    with pytest.raises(oss.exceptions.OperationError) as e:
        client.get_object(oss.GetObjectRequest(bucket=BUCKET, key=prefix + "missing"))
    err = service_error(e)
    assert (err.status_code, err.code) == (404, "NoSuchKey")
    version = request.node.callspec.params["client"]
    bad = make_client(emulator, version, sk="wrong-secret")
    with pytest.raises(oss.exceptions.OperationError) as e:
        bad.put_object(oss.PutObjectRequest(bucket=BUCKET, key=prefix + "x", body=b"1"))
    err = service_error(e)
    assert (err.status_code, err.code) == (403, "SignatureDoesNotMatch")
    unknown = make_client(emulator, version, ak="no-such-ak")
    with pytest.raises(oss.exceptions.OperationError) as e:
        unknown.put_object(oss.PutObjectRequest(bucket=BUCKET, key=prefix + "x", body=b"1"))
    assert service_error(e).code == "InvalidAccessKeyId"


def test_sts_credentials_from_metadata(emulator, prefix):
    ak, sk, token = sts_from_metadata(emulator)
    c = make_client(emulator, "v4", ak=ak, sk=sk, token=token)
    c.put_object(oss.PutObjectRequest(bucket=BUCKET, key=prefix + "sts", body=b"sts"))
    _, data = get_bytes(c, prefix + "sts")
    assert data == b"sts"
    # A token that does not belong to the key is refused.
    c = make_client(emulator, "v4", ak=ak, sk=sk, token=token + "tampered")
    with pytest.raises(oss.exceptions.OperationError) as e:
        c.put_object(oss.PutObjectRequest(bucket=BUCKET, key=prefix + "bad", body=b"1"))
    assert service_error(e).status_code == 403
    # Without its token an STS id is unknown to OSS: 403 InvalidAccessKeyId (EC 0002-00000005).
    c = make_client(emulator, "v4", ak=ak, sk=sk, token=None)
    with pytest.raises(oss.exceptions.OperationError) as e:
        c.put_object(oss.PutObjectRequest(bucket=BUCKET, key=prefix + "no-token", body=b"1"))
    err = service_error(e)
    assert (err.status_code, err.code) == (403, "InvalidAccessKeyId")
    assert err.message == "The OSS Access Key Id you provided does not exist in our records."
    assert err.ec == "0002-00000005"


@pytest.mark.xfail(reason="SignerV1 sends the STS token as a 'security-token' header "
                          "instead of x-oss-security-token (docs/PROTOCOL.md 1.4)")
def test_sts_v1_header_token_placement(emulator, prefix):
    ak, sk, token = sts_from_metadata(emulator)
    c = make_client(emulator, "v1", ak=ak, sk=sk, token=token)
    c.put_object(oss.PutObjectRequest(bucket=BUCKET, key=prefix + "sts-v1", body=b"sts"))


@pytest.mark.parametrize("version,sts", [("v4", False), ("v4", True), ("v1", False),
                                          ("v1", True)])
def test_presigned_get(emulator, prefix, version, sts):
    import urllib.error
    import urllib.request
    if sts:
        ak, sk, token = sts_from_metadata(emulator)
        c = make_client(emulator, version, ak=ak, sk=sk, token=token)
        make_client(emulator, "v4", ak=ak, sk=sk, token=token).put_object(
            oss.PutObjectRequest(bucket=BUCKET, key=prefix + "shared file", body=b"presigned"))
    else:
        c = make_client(emulator, version)
        c.put_object(oss.PutObjectRequest(bucket=BUCKET, key=prefix + "shared file",
                                          body=b"presigned"))
    pre = c.presign(oss.GetObjectRequest(bucket=BUCKET, key=prefix + "shared file"))
    with urllib.request.urlopen(pre.url, timeout=5) as r:
        assert r.read() == b"presigned"
    # Tampering with the signed key is refused.
    bad = pre.url.replace("shared%20file", "other%20file")
    assert bad != pre.url
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(bad, timeout=5)
    assert e.value.code == 403


@pytest.mark.parametrize("version", ["v4", "v1"])
def test_sts_key_without_its_token_is_an_unknown_key(emulator, prefix, version):
    """An STS AccessKeyId signed without its security token: OSS knows the id only
    together with its token, so it answers 403 InvalidAccessKeyId (EC 0002-00000005), not
    InvalidSecurityToken — for writes, reads, HEAD and listings alike, in V4 and V1."""
    ak, sk, token = sts_from_metadata(emulator)
    key = prefix + "sts-no-token"
    make_client(emulator, "v4", ak=ak, sk=sk, token=token).put_object(
        oss.PutObjectRequest(bucket=BUCKET, key=key, body=b"1"))
    c = make_client(emulator, version, ak=ak, sk=sk, token=None)
    calls = [
        lambda: c.put_object(oss.PutObjectRequest(bucket=BUCKET, key=key, body=b"2")),
        lambda: c.get_object(oss.GetObjectRequest(bucket=BUCKET, key=key)),
        lambda: c.head_object(oss.HeadObjectRequest(bucket=BUCKET, key=key)),
        lambda: c.list_objects_v2(oss.ListObjectsV2Request(bucket=BUCKET, prefix=prefix)),
    ]
    for call in calls:
        with pytest.raises(oss.exceptions.OperationError) as e:
            call()
        err = service_error(e)
        assert err.status_code == 403
        if err.code:  # HEAD has no body: the SDK sees the status (and x-oss-ec) only
            assert err.code == "InvalidAccessKeyId"
        assert err.ec == "0002-00000005"

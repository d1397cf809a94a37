#!/usr/bin/env python3
"""Drives the emulator with the official Python SDK (alibabacloud-oss-v2), V4 and V1.

Usage: emulator-sdk-interop.py ENDPOINT BUCKET AK SK [REGION]
Exits non-zero on the first mismatch. Checks that real SDK requests verify (signing,
CRC-64 checks the SDK performs on upload and download, XML shapes it parses).
"""
import sys

import alibabacloud_oss_v2 as oss
from alibabacloud_oss_v2.credentials import StaticCredentialsProvider


def client(endpoint, ak, sk, region, signer=None):
    cfg = oss.config.load_default()
    cfg.credentials_provider = StaticCredentialsProvider(ak, sk)
    cfg.region = region
    cfg.endpoint = endpoint
    cfg.use_path_style = True
    if signer:
        cfg.signature_version = signer
    return oss.Client(cfg)


def run(c, bucket, tag):
    key = f"sdk/{tag}/a b+c/日本.txt"
    data = b"hello from the official SDK " * 1000
    r = c.put_object(oss.PutObjectRequest(bucket=bucket, key=key, body=data))
    assert r.status_code == 200, r
    g = c.get_object(oss.GetObjectRequest(bucket=bucket, key=key))
    assert g.body.read() == data
    g = c.get_object(oss.GetObjectRequest(bucket=bucket, key=key, range_header="bytes=5-9", range_behavior="standard"))
    assert g.body.read() == data[5:10]
    h = c.head_object(oss.HeadObjectRequest(bucket=bucket, key=key))
    assert h.content_length == len(data)
    try:
        c.head_object(oss.HeadObjectRequest(bucket=bucket, key=key + ".missing"))
        raise AssertionError("missing key found")
    except oss.exceptions.OperationError as e:
        assert "NoSuchKey" in str(e), e
    lst = c.list_objects_v2(oss.ListObjectsV2Request(bucket=bucket, prefix=f"sdk/{tag}/", delimiter="/"))
    assert [p.prefix for p in lst.common_prefixes] == [f"sdk/{tag}/a b+c/"], lst.common_prefixes
    # multipart with the uploader (parts ≥ 100 KiB)
    big = bytes(range(256)) * 4096 * 3
    up = c.initiate_multipart_upload(oss.InitiateMultipartUploadRequest(bucket=bucket, key=key + ".mp"))
    parts = []
    step = 256 * 1024
    for i, off in enumerate(range(0, len(big), step), start=1):
        pr = c.upload_part(oss.UploadPartRequest(bucket=bucket, key=key + ".mp", upload_id=up.upload_id, part_number=i, body=big[off:off + step]))
        parts.append(oss.UploadPart(part_number=i, etag=pr.etag))
    c.complete_multipart_upload(oss.CompleteMultipartUploadRequest(bucket=bucket, key=key + ".mp", upload_id=up.upload_id,
                                complete_multipart_upload=oss.CompleteMultipartUpload(parts=parts)))
    assert c.get_object(oss.GetObjectRequest(bucket=bucket, key=key + ".mp")).body.read() == big
    a = c.append_object(oss.AppendObjectRequest(bucket=bucket, key=key + ".app", position=0, body=b"abc"))
    c.append_object(oss.AppendObjectRequest(bucket=bucket, key=key + ".app", position=a.next_position, body=b"def"))
    assert c.get_object(oss.GetObjectRequest(bucket=bucket, key=key + ".app")).body.read() == b"abcdef"
    c.copy_object(oss.CopyObjectRequest(bucket=bucket, key=key + ".copy", source_key=key))
    c.delete_multiple_objects(oss.DeleteMultipleObjectsRequest(bucket=bucket, objects=[
        oss.DeleteObject(key=key + s) for s in ("", ".mp", ".app", ".copy")]))
    left = c.list_objects_v2(oss.ListObjectsV2Request(bucket=bucket, prefix=f"sdk/{tag}/"))
    assert not left.contents, left.contents
    print(f"{tag}: ok")


def main():
    endpoint, bucket, ak, sk = sys.argv[1:5]
    region = sys.argv[5] if len(sys.argv) > 5 else "cn-hangzhou"
    run(client(endpoint, ak, sk, region), bucket, "v4")
    run(client(endpoint, ak, sk, region, "v1"), bucket, "v1")


if __name__ == "__main__":
    main()

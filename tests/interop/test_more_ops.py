"""Operations the filesystem relies on beyond plain object I/O, through the official SDK
(V4 and V1): UploadPartCopy, ListMultipartUploads/Abort, conditional GETs, GetBucketInfo,
DescribeRegions."""

import hashlib
import os

import pytest

import alibabacloud_oss_v2 as oss
from conftest import BUCKET, REGION, service_error


def test_upload_part_copy_assembles_ranges(client, prefix):
    src, dst = prefix + "src.bin", prefix + "dst.bin"
    data = os.urandom(300 * 1024 + 17)
    client.put_object(oss.PutObjectRequest(bucket=BUCKET, key=src, body=data))
    init = client.initiate_multipart_upload(
        oss.InitiateMultipartUploadRequest(bucket=BUCKET, key=dst))
    cut = 200 * 1024
    parts = []
    for n, (a, b) in enumerate([(0, cut - 1), (cut, len(data) - 1)], start=1):
        res = client.upload_part_copy(oss.UploadPartCopyRequest(
            bucket=BUCKET, key=dst, upload_id=init.upload_id, part_number=n,
            source_key=src, source_range=f"bytes={a}-{b}"))
        parts.append(oss.UploadPart(part_number=n, etag=res.etag))
    client.complete_multipart_upload(oss.CompleteMultipartUploadRequest(
        bucket=BUCKET, key=dst, upload_id=init.upload_id,
        complete_multipart_upload=oss.CompleteMultipartUpload(parts=parts)))
    got = client.get_object(oss.GetObjectRequest(bucket=BUCKET, key=dst)).body.read()
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()


def test_list_and_abort_multipart_uploads(client, prefix):
    key = prefix + "pending.bin"
    init = client.initiate_multipart_upload(
        oss.InitiateMultipartUploadRequest(bucket=BUCKET, key=key))
    res = client.list_multipart_uploads(
        oss.ListMultipartUploadsRequest(bucket=BUCKET, prefix=prefix))
    assert [(u.key, u.upload_id) for u in res.uploads] == [(key, init.upload_id)]
    client.abort_multipart_upload(oss.AbortMultipartUploadRequest(
        bucket=BUCKET, key=key, upload_id=init.upload_id))
    res = client.list_multipart_uploads(
        oss.ListMultipartUploadsRequest(bucket=BUCKET, prefix=prefix))
    assert not res.uploads
    with pytest.raises(Exception) as e:
        client.abort_multipart_upload(oss.AbortMultipartUploadRequest(
            bucket=BUCKET, key=key, upload_id=init.upload_id))
    err = service_error(e)
    assert (err.status_code, err.code) == (404, "NoSuchUpload")


def test_conditional_get(client, prefix):
    key = prefix + "cond.txt"
    put = client.put_object(oss.PutObjectRequest(bucket=BUCKET, key=key, body=b"v1"))
    res = client.get_object(oss.GetObjectRequest(bucket=BUCKET, key=key, if_match=put.etag))
    assert res.body.read() == b"v1"
    with pytest.raises(Exception) as e:
        client.get_object(oss.GetObjectRequest(bucket=BUCKET, key=key, if_match='"0000"'))
    assert service_error(e).status_code == 412
    with pytest.raises(Exception) as e:
        client.get_object(oss.GetObjectRequest(bucket=BUCKET, key=key,
                                               if_none_match=put.etag))
    assert service_error(e).status_code == 304


def test_get_bucket_info(client):
    res = client.get_bucket_info(oss.GetBucketInfoRequest(bucket=BUCKET))
    assert res.bucket_info.name == BUCKET
    assert REGION in (res.bucket_info.location or "")


def test_describe_regions(client):
    res = client.describe_regions(oss.DescribeRegionsRequest())
    regions = {r.region for r in res.region_info}
    assert "oss-cn-hangzhou" in regions and "oss-ap-southeast-1" in regions
    one = client.describe_regions(oss.DescribeRegionsRequest(regions="oss-ap-southeast-1"))
    [info] = one.region_info
    assert info.internet_endpoint == "oss-ap-southeast-1.aliyuncs.com"
    assert info.internal_endpoint == "oss-ap-southeast-1-internal.aliyuncs.com"

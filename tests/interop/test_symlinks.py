"""Symlink rules the mount relies on, through the official SDK (V4 and V1): a link's own
user metadata comes back with GetSymlink while HEAD answers with the target's, and a
target that breaks the object-name rules (leading `/` or `\\`) is refused."""

import pytest

import alibabacloud_oss_v2 as oss
from conftest import BUCKET, service_error


def test_get_symlink_returns_the_links_own_metadata(client, prefix):
    target, link = prefix + "target.txt", prefix + "link"
    client.put_object(oss.PutObjectRequest(bucket=BUCKET, key=target, body=b"data",
                                           metadata={"uid": "7", "mode": "33188"}))
    client.put_symlink(oss.PutSymlinkRequest(bucket=BUCKET, key=link, symlink_target=target,
                                             metadata={"uid": "1234", "mode": "41471"}))
    got = client.get_symlink(oss.GetSymlinkRequest(bucket=BUCKET, key=link))
    assert got.target == target
    assert got.metadata.get("uid") == "1234" and got.metadata.get("mode") == "41471"
    head = client.head_object(oss.HeadObjectRequest(bucket=BUCKET, key=link))
    assert head.content_length == 4
    assert head.metadata.get("uid") == "7", "HEAD follows the link"


@pytest.mark.parametrize("bad", ["/abs/target", "\\back"])
def test_symlink_target_must_be_an_object_name(client, prefix, bad):
    with pytest.raises(oss.exceptions.OperationError) as e:
        client.put_symlink(oss.PutSymlinkRequest(bucket=BUCKET, key=prefix + "link",
                                                 symlink_target=bad))
    err = service_error(e)
    assert (err.status_code, err.code) == (400, "InvalidObjectName")

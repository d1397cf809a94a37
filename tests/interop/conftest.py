"""Fixtures for the interop suite: the official OSS Python SDK v2 against the local
emulator binary (ossmount-emulator).

The emulator is started once per session on loopback ports chosen here, with a fresh
data directory, and stopped (terminate, then kill) at the end even when tests fail.
Point OSSMOUNT_EMULATOR at a binary to test another build; by default
target/debug/ossmount-emulator is used and the suite is skipped if it does not exist.
"""

import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
import uuid

import pytest

import alibabacloud_oss_v2 as oss

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUCKET = "interop-bucket"
REGION = "cn-hangzhou"
AK = "interop-ak"
SK = "interop-secret-key"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Emulator:
    def __init__(self, endpoint, metadata):
        self.endpoint = endpoint  # http://127.0.0.1:PORT
        self.metadata = metadata  # http://127.0.0.1:PORT (ECS metadata service)


@pytest.fixture(scope="session")
def emulator():
    binary = os.environ.get("OSSMOUNT_EMULATOR",
                            os.path.join(REPO, "target", "debug", "ossmount-emulator"))
    if not os.path.exists(binary):
        pytest.skip(f"emulator binary {binary} not built (cargo build --bin ossmount-emulator)")
    data_dir = tempfile.mkdtemp(prefix="ossmount-interop-")
    meta_port = _free_port()
    cmd = [binary, "--listen", "127.0.0.1:0", "--data-dir", data_dir, "--bucket", BUCKET,
           "--region", REGION, "--access-key-id", AK, "--access-key-secret", SK,
           "--metadata-listen", f"127.0.0.1:{meta_port}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ready = {}

    def read_stdout():
        for line in proc.stdout:
            if line.startswith("ready ") and "addr" not in ready:
                ready["addr"] = line.split()[1].strip()

    threading.Thread(target=read_stdout, daemon=True).start()
    stderr_lines = []
    threading.Thread(target=lambda: stderr_lines.extend(proc.stderr), daemon=True).start()
    deadline = time.monotonic() + 30
    while "addr" not in ready:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            shutil.rmtree(data_dir, ignore_errors=True)
            pytest.fail("emulator did not print 'ready <addr>': " + "".join(stderr_lines[-20:]))
        time.sleep(0.05)
    addr = ready["addr"]
    if not addr.startswith("http"):
        addr = "http://" + addr
    try:
        yield Emulator(addr, f"http://127.0.0.1:{meta_port}")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(data_dir, ignore_errors=True)


def make_client(emulator, version="v4", ak=AK, sk=SK, token=None):
    cfg = oss.config.load_default()
    cfg.credentials_provider = oss.credentials.StaticCredentialsProvider(ak, sk, token)
    cfg.region = REGION
    cfg.endpoint = emulator.endpoint
    cfg.use_path_style = True
    cfg.signature_version = version
    cfg.retry_max_attempts = 1
    return oss.Client(cfg)


@pytest.fixture(params=["v4", "v1"])
def client(request, emulator):
    return make_client(emulator, request.param)


@pytest.fixture
def prefix():
    """A fresh key prefix per test, so tests never see each other's objects."""
    return f"t-{uuid.uuid4().hex[:12]}/"


def sts_from_metadata(emulator):
    """Reads STS credentials the way an ECS instance would (role name, then JSON)."""
    base = emulator.metadata + "/latest/meta-data/ram/security-credentials/"
    with urllib.request.urlopen(base, timeout=5) as r:
        role = r.read().decode().strip()
    with urllib.request.urlopen(base + role, timeout=5) as r:
        doc = json.loads(r.read().decode())
    assert doc.get("Code") == "Success", doc
    return doc["AccessKeyId"], doc["AccessKeySecret"], doc["SecurityToken"]


def service_error(excinfo):
    """The ServiceError inside an SDK OperationError."""
    err = excinfo.value
    inner = err.unwrap() if hasattr(err, "unwrap") else err
    assert isinstance(inner, oss.exceptions.ServiceError), repr(err)
    return inner

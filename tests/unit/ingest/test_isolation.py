"""The parse sandbox's isolation (ingest/isolation.py, ingest/sandbox.py): a parser taken over
by the file it parses runs the probes below in the real child, and finds no secret in its
environment, no key file it can read, no file at all it can open by path, and no network.

The probes are sandbox targets: the document they are given says what to try, and they
return what happened as the page's text.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest

from core import crypto
from core.domain import DocumentKind, Page
from core.keystore import SqliteKeyStore
from core.settings import LimitSettings
from core.vault import Vault
from ingest import zygote
from ingest.isolation import NOBODY, minimal_env
from ingest.sandbox import SandboxPool, parse_isolated

HERE = "tests.unit.ingest.test_isolation"
SECRETS = {"DOCQA_ENCRYPTION_KEY": "c2VjcmV0LWVuY3J5cHRpb24ta2V5LTAxMjM0NTY3ODk=",
           "DOCQA_ADMIN_KEY": "admin-secret-0123456789abcdef",
           "DOCQA_API_KEYS": "acme:api-secret-0123456789abcdef",
           "DOCQA_DATABASE_URL": "postgresql://docqa:db-secret-password@127.0.0.1/docqa"}


# ---------------------------------------------------------------- probes (in the child)


def preload() -> None:
    """As ingest.readers.preload: the sandbox calls it before the isolation."""
    "127.0.0.1".encode("idna")  # socket's address lookups import this codec on first use


def _answer(result: dict[str, Any]) -> list[Page]:
    return [Page(number=1, text=json.dumps({**result, "parent": os.getppid()}), offset=0)]


def probe_connect(path: Path, kind: Any, limits: Any) -> list[Page]:
    port = int(path.read_text())
    result: dict[str, Any] = {}
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            conn.sendall(b"leaked")
        result["connect"] = "connected"
    except OSError as exc:
        result["connect"] = f"{type(exc).__name__}: {exc}"
    try:  # a UDP datagram needs no peer to accept it
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.sendto(b"leaked", ("127.0.0.1", port))
        result["udp"] = "sent"
    except OSError as exc:
        result["udp"] = f"{type(exc).__name__}: {exc}"
    return _answer(result)


def probe_environment(path: Path, kind: Any, limits: Any) -> list[Page]:
    from ingest import isolation

    return _answer({"env": dict(os.environ), "uid": os.geteuid(), "gid": os.getegid(),
                    "groups": os.getgroups(), "layers": isolation.applied,
                    "netns": os.stat("/proc/self/ns/net").st_ino})


def probe_read(path: Path, kind: Any, limits: Any) -> list[Page]:
    """Try to open every path the document names; the document itself opens (a memfd)."""
    from ingest import isolation

    result: dict[str, Any] = {"document": path.read_text()[:20],
                              "filesystem": isolation.applied.get("filesystem")}
    for target in [*json.loads(path.read_text()), "/etc/passwd"]:
        try:
            with open(target, "rb") as fh:
                result[target] = "read: " + fh.read(64).hex()
        except OSError as exc:
            result[target] = f"{type(exc).__name__}: {exc}"
    for fd in range(256):  # what it holds (its directory cannot be listed any more)
        try:
            os.fstat(fd)
        except OSError:
            continue
        try:
            result[f"fd {fd}"] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError as exc:
            result[f"fd {fd}"] = type(exc).__name__
    return _answer(result)


# ---------------------------------------------------------------- the tests


@pytest.fixture(autouse=True, params=["fresh child", "pooled child", "zygote child"])
def pooled(request: pytest.FixtureRequest) -> str:
    """Every probe runs three times: in a child started for the parse, in the child a
    ``SandboxPool`` started ahead (before the document existed) and then handed it, and in
    a child the parse zygote forked ahead (ingest/zygote.py; the zygote started in this
    test, with the test's environment)."""
    return str(request.param)


def _probe(tmp_path: Path, target: str, document: bytes, key: bytes | None = None,
           path: Path | None = None, *, pooled: str) -> dict[str, Any]:
    if path is None:
        path = tmp_path / "probe.txt"
        path.write_bytes(document)
    zygote.stop()
    pool = None if pooled == "fresh child" else SandboxPool(zygote=pooled == "zygote child")
    spare = None
    if pool is not None:
        pool.refill(f"{HERE}:{target}", DocumentKind.TEXT)
        spare = pool.spare_pid
        assert spare is not None
    try:
        pages = parse_isolated(path, DocumentKind.TEXT, LimitSettings(),
                               target=f"{HERE}:{target}", key=key, pool=pool)
        if pool is not None:  # the spare parsed it (and is gone); another waits
            assert pool.spare_pid not in (None, spare)
            with pytest.raises(ProcessLookupError):
                os.kill(spare, 0)  # type: ignore[arg-type]
        if pooled == "zygote child":
            z = zygote.current()
            assert z is not None and int(json.loads(pages[0].text)["parent"]) == z.pid
    finally:
        if pool is not None:
            pool.close()
        zygote.stop()
    return dict(json.loads(pages[0].text))


def test_a_connect_from_inside_the_parser_fails_and_reaches_nobody(tmp_path: Path,
                                                                   pooled: str) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", listener.getsockname()[1]))
        port = listener.getsockname()[1]
        result = _probe(tmp_path, "probe_connect", str(port).encode(), pooled=pooled)
        assert result["connect"] != "connected" and result["udp"] != "sent", result
        # the child has ended: a connection or datagram it made would be waiting here now
        listener.setblocking(False)
        udp.setblocking(False)
        with pytest.raises(BlockingIOError):
            listener.accept()
        with pytest.raises(BlockingIOError):
            udp.recvfrom(64)


def test_the_child_has_no_secret_in_its_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pooled: str
) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    result = _probe(tmp_path, "probe_environment", b"env", pooled=pooled)
    env: dict[str, str] = result["env"]
    assert env == minimal_env() or set(env) <= set(minimal_env()) | {"LC_CTYPE"}, env
    assert not any(name.startswith("DOCQA_") for name in env)
    dump = json.dumps(env)
    assert not any(value in dump for value in SECRETS.values())
    layers = result["layers"]
    assert layers["no_new_privs"] and (layers["netns"] or layers["sockets"]), layers
    if layers["netns"]:
        assert result["netns"] != os.stat("/proc/self/ns/net").st_ino
    if os.geteuid() == 0:  # root drops to nobody, groups and all
        assert layers["privileges"]
        assert (result["uid"], result["gid"], result["groups"]) == (NOBODY, NOBODY, [])


def test_the_child_cannot_read_the_master_key_or_any_file(tmp_path: Path, pooled: str) -> None:
    data = tmp_path / "data"
    data.mkdir()
    crypto.load_or_create_master_key(data, None)  # DATA/master.key, mode 0600
    master = data / crypto.MASTER_KEY_FILE
    assert master.stat().st_mode & 0o777 == 0o600
    public = tmp_path / "public.txt"
    public.write_text("world-readable words")
    public.chmod(0o644)
    vault = Vault(b"k" * 32, SqliteKeyStore(data / "registry.sqlite3"))
    stored = data / "doc"
    names = [str(master), str(public), str(stored), str(data / "registry.sqlite3")]
    vault.write_bytes(stored, json.dumps(names).encode())

    result = _probe(tmp_path, "probe_read", b"", key=vault.key_for(stored), path=stored,
                    pooled=pooled)
    assert result["document"] == json.dumps(names)[:20]  # it got the plaintext, in memory
    for name in names:
        assert result[name].startswith(("PermissionError", "FileNotFoundError")), (name, result)
    assert master.read_bytes().hex()[:16] not in json.dumps(result)
    if result["filesystem"]:  # Landlock: not even what any user may read opens
        assert result["/etc/passwd"].startswith("PermissionError"), result
    # what it holds: its pipes and the memory file, nothing of the data directory
    held = [str(v) for k, v in result.items() if k.startswith("fd ")]
    assert held and not any(str(data) in v or str(tmp_path) in v for v in held), held
    assert not any(v.startswith("socket:") for v in held), held

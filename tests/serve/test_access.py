"""Who may talk to a server (omfs.access): only the owner's connections on loopback without
a token, tested as another OS user would try; token files; Host names; Bearer in any case."""

from __future__ import annotations

import os
import socket

import pytest
from omfs_serving import OTHER_UID, get_as_other_user, need_root, running

from omfs import access, peers
from omfs.errors import ConfigError

httpx = pytest.importorskip("httpx")
linux = pytest.mark.skipif(
    not access.peer_uid_supported(), reason="peer_uid reads Linux's /proc/net/tcp"
)


@pytest.fixture(scope="module")
def om(tmp_path_factory):
    import pandas as pd

    import omfs

    om = omfs.setup(str(tmp_path_factory.mktemp("access") / "ctx"))
    om.datasets.put(pd.DataFrame({"secret": [42]}), "payroll")
    return om


@linux
@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6])
def test_peer_uid_names_who_opened_the_connection(family):
    host = "127.0.0.1" if family == socket.AF_INET else "::1"
    with socket.socket(family) as listener:
        try:
            listener.bind((host, 0))
        except OSError:
            pytest.skip(f"no {host} on this machine")
        listener.listen()
        server = listener.getsockname()[:2]
        with socket.create_connection(server) as client:
            conn, _ = listener.accept()
            with conn:
                mine = client.getsockname()[:2]
                assert access.peer_uid(*mine, *server) == os.geteuid()  # netlink
                assert peers._proc_uid(*map(_ip, mine), *map(_ip, server)) == os.geteuid()
    assert access.peer_uid(host, 1, *server) is None  # no such connection
    assert peers._proc_uid(_ip(host), 1, *map(_ip, server)) is None


def _ip(value):
    import ipaddress

    return ipaddress.ip_address(value) if isinstance(value, str) else value


@linux
def test_loopback_without_token_serves_only_its_owner(om):
    """Another local user gets a 403 and the context's data never leaves (attack #1)."""
    need_root()
    from omfs.serve import app

    owner_only = access.owner_only_protocol()
    with running(app(om, audit=False), http=owner_only) as url:
        with httpx.Client(base_url=url) as owner:
            assert owner.get("/v1/datasets/payroll").json()["data"] == [[42]]
        for path in ("/v1/datasets/payroll?format=csv", "/health"):
            answer = get_as_other_user(url, path, OTHER_UID)
            assert answer.startswith(b"HTTP/1.1 403"), answer[:200]
            assert b"42" not in answer.split(b"\r\n\r\n", 1)[1]
            assert b"only connections from the OS user who started it" in answer
    # opened on purpose: everyone on the machine may read
    with running(app(om, audit=False)) as url:
        assert get_as_other_user(url, "/v1/datasets/payroll?format=csv").startswith(b"HTTP/1.1 200")


def test_loopback_guard_and_the_generated_token(tmp_path, monkeypatch):
    monkeypatch.delenv(access.TOKEN_ENV, raising=False)
    none, some = access.Tokens(), access.Tokens({b"t": access.READ})
    expected = access.OWNER if access.peer_uid_supported() else access.TOKEN
    assert access.loopback_guard("127.0.0.1", none) == expected
    assert access.loopback_guard("::1", none) == expected
    assert access.loopback_guard("127.0.0.1", none, allow_other_users=True) == access.OPEN
    assert access.loopback_guard("127.0.0.1", some) == access.OPEN
    assert access.loopback_guard("0.0.0.0", some) == access.OPEN
    # where the system cannot tell who connects: a private token file, made once, kept
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    path = access.generated_token_file("serve")
    assert path.is_relative_to(tmp_path) and (path.stat().st_mode & 0o777) == 0o600
    scopes = access.read_token_file(path)
    assert list(scopes.values()) == [access.READ] and len(next(iter(scopes))) >= 32
    assert access.generated_token_file("serve") == path
    assert access.read_token_file(path) == scopes


@pytest.mark.parametrize("line", ["read", "write   ", "s3cr3t", "admin s3cr3t", "read a b"])
def test_token_file_lines_are_scope_and_token(tmp_path, line):
    """A lone word was a write token named after it (attack #4): now a ConfigError."""
    path = tmp_path / "tokens"
    path.write_text(f"# tokens\nread fine-token\n{line}\n")
    path.chmod(0o600)
    with pytest.raises(ConfigError, match=r"line 3: write 'read TOKEN' or 'write TOKEN'"):
        access.read_token_file(path)


@pytest.mark.skipif(os.name != "posix", reason="file owners")
def test_token_file_must_be_the_users_own(tmp_path):
    """Not another user's file, nor a link to one (attack #17)."""
    need_root()
    theirs = tmp_path / "theirs"
    theirs.write_text("write their-token\n")
    theirs.chmod(0o600)
    os.chown(theirs, OTHER_UID, OTHER_UID)
    with pytest.raises(ConfigError, match="is not yours"):
        access.read_token_file(theirs)
    link = tmp_path / "link"
    link.symlink_to(theirs)
    with pytest.raises(ConfigError, match="is not yours"):
        access.read_token_file(link)
    mine = tmp_path / "mine"
    mine.write_text("write my-token\n")
    mine.chmod(0o600)
    link2 = tmp_path / "link2"
    link2.symlink_to(mine)
    assert access.read_token_file(link2) == {b"my-token": access.WRITE}


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "  Bearer"])
def test_bearer_scheme_in_any_case(scheme):
    tokens = access.Tokens({b"tok": access.WRITE})
    assert tokens.scope(f"{scheme} tok") == access.WRITE
    assert tokens.scope("Basic tok") is None and tokens.scope("Bearer ") is None


@pytest.mark.parametrize(
    ("host", "bind", "has_token", "allowed"),
    [
        ("127.0.0.1:8000", "127.0.0.1", False, True),
        ("localhost:8000", "127.0.0.1", False, True),
        ("[::1]:8000", "::1", False, True),
        ("evil.example", "127.0.0.1", False, False),
        ("evil.example", "127.0.0.1", True, False),
        (None, "127.0.0.1", False, False),
        ("models.example.com", "0.0.0.0", True, True),
    ],
)
def test_host_names_a_loopback_server_answers(host, bind, has_token, allowed):
    tokens = access.Tokens({b"t": access.READ} if has_token else {})
    assert access.host_allowed(host, bind, tokens) is allowed

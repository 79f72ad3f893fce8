"""Who opened a TCP connection on this machine: the OS user (uid) owning its client socket.

Linux only. The kernel is asked for the one socket with the connection's addresses
(``sock_diag`` over netlink, what ``ss`` uses: one exact look-up, microseconds, no
privilege); where netlink is not available, ``/proc/net/tcp`` and ``tcp6`` are read (a
scan of every socket of the machine: slower). :mod:`omfs.access` checks each connection
to a loopback server with it.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
import sys

__all__ = ["peer_uid", "peer_uid_supported"]

_PROC_TCP = ("/proc/net/tcp", "/proc/net/tcp6")
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST = 1
_NLMSG_ERROR = 2
_NETLINK_SOCK_DIAG = 4
_ALL_STATES = 0xFFFFFFFF
_NO_COOKIE = 0xFFFFFFFF
#: nlmsghdr, then inet_diag_req_v2: family, protocol, ext, pad, states, then the socket's
#: id: sport, dport (big-endian), src, dst (16 bytes each), interface, cookie
_REQUEST = struct.Struct("=IHHII BBBBI 2s2s16s16sIII")
#: the uid's offset in the answer: nlmsghdr (16), family..retrans (4), id (48), expires,
#: rqueue, wqueue (12)
_UID_AT = 16 + 4 + 48 + 12


def peer_uid_supported() -> bool:
    """True where :func:`peer_uid` can tell who opened a connection (Linux)."""
    return sys.platform.startswith("linux") and os.path.exists(_PROC_TCP[0])


def peer_uid(
    client_host: str,
    client_port: int,
    server_host: str | None = None,
    server_port: int | None = None,
) -> int | None:
    """The OS user (uid) owning the socket at ``client_host:client_port`` on this machine,
    the client end of a loopback connection to ``server_host:server_port``; None when it
    cannot be found. Without the server's end, only /proc is searched."""
    try:
        client = ipaddress.ip_address(client_host.split("%", 1)[0].strip("[]"))
        server = None
        if server_host is not None and server_port is not None:
            server = ipaddress.ip_address(server_host.split("%", 1)[0].strip("[]"))
    except ValueError:
        return None
    if server is not None and server_port is not None:
        try:
            for one, other in _families(client, server):
                found = _diag_uid(one, client_port, other, server_port)
                if found is not None:
                    return found
            return None  # the kernel knows no such connection
        except OSError:
            pass  # no netlink here: read /proc
    return _proc_uid(client, client_port, server, server_port)


Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _families(client: Address, server: Address) -> list[tuple[Address, Address]]:
    """The address pairs the client's socket may have: as given, and as plain IPv4 when
    the server sees an IPv4-mapped IPv6 address (or the other way round)."""
    pairs = [(client, server)]
    both_v6 = isinstance(client, ipaddress.IPv6Address) and isinstance(
        server, ipaddress.IPv6Address
    )
    if both_v6 and client.ipv4_mapped is not None and server.ipv4_mapped is not None:  # type: ignore[union-attr]
        pairs.append((client.ipv4_mapped, server.ipv4_mapped))  # type: ignore[union-attr]
    return pairs


def _diag_uid(client: Address, client_port: int, server: Address, server_port: int) -> int | None:
    """The uid of the TCP socket ``client:client_port`` -> ``server:server_port``, asked
    of the kernel (sock_diag); None when there is none; OSError without netlink."""
    family = socket.AF_INET if client.version == 4 else socket.AF_INET6
    request = _REQUEST.pack(
        _REQUEST.size,
        _SOCK_DIAG_BY_FAMILY,
        _NLM_F_REQUEST,
        1,
        0,
        family,
        socket.IPPROTO_TCP,
        0,
        0,
        _ALL_STATES,
        client_port.to_bytes(2, "big"),
        server_port.to_bytes(2, "big"),
        client.packed.ljust(16, b"\0"),
        server.packed.ljust(16, b"\0"),
        0,
        _NO_COOKIE,
        _NO_COOKIE,
    )
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_SOCK_DIAG) as link:
        link.settimeout(1.0)
        link.sendto(request, (0, 0))
        answer = link.recv(8192)
    kind = struct.unpack_from("=H", answer, 4)[0]
    if kind == _NLMSG_ERROR or len(answer) < _UID_AT + 4:
        return None  # no such socket (or gone already)
    uid: int = struct.unpack_from("=I", answer, _UID_AT)[0]
    return uid


def _proc_text(address: Address, port: int) -> list[str]:
    """``address:port`` as /proc/net/tcp{,6} write it (each 32-bit word of the address in
    host byte order, in hex), as IPv4 and as IPv4-mapped IPv6 alike."""
    forms: list[Address] = [address]
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        forms.append(address.ipv4_mapped)
    elif isinstance(address, ipaddress.IPv4Address):
        forms.append(ipaddress.IPv6Address(f"::ffff:{address}"))
    out = []
    for one in forms:
        words = struct.unpack(f"={len(one.packed) // 4}I", one.packed)
        out.append("".join(f"{w:08X}" for w in words) + f":{port:04X}")
    return out


def _proc_uid(
    client: Address, client_port: int, server: Address | None, server_port: int | None
) -> int | None:
    """:func:`peer_uid` from /proc/net/tcp and tcp6 (every socket of the machine)."""
    local = _proc_text(client, client_port)
    remote = [""]
    if server is not None and server_port is not None:
        remote = _proc_text(server, server_port)
    # the local address follows "N: "; the remote one, when given, follows it
    needles = [f": {a} {b} " if b else f": {a} " for a in local for b in remote]
    for path in _PROC_TCP:
        try:
            with open(path, "rb") as table:
                text = table.read().decode("ascii", "replace")
        except OSError:
            continue
        for needle in needles:
            uid = _uid_at(text, needle)
            if uid is not None:
                return uid
    return None


def _uid_at(text: str, needle: str) -> int | None:
    """The uid of the first live socket (inode not 0) whose line holds ``needle``."""
    at = text.find(needle)
    while at >= 0:
        start = text.rfind("\n", 0, at) + 1
        end = text.find("\n", at)
        fields = text[start : end if end >= 0 else len(text)].split()
        if len(fields) > 9 and fields[9] != "0":  # a TIME_WAIT remnant has inode 0
            return int(fields[7])
        at = text.find(needle, at + 1)
    return None

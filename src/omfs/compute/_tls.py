"""The certificate of a cluster omfs starts: who holds it may connect, nobody else.

Each cluster omfs starts (the background one of ``om cluster start``, a private one) gets a
self-signed certificate and key made at its start, as ``distributed``'s
``Security.temporary()`` makes one, but written to files of mode 0600 in the user's state
folder (mode 0700), since its workers are separate processes. Scheduler, workers and
clients all present it (Dask's TLS is mutual: ``verify_mode = CERT_REQUIRED``), and
``require_encryption`` refuses plain ``tcp://``, so a process that cannot read the key file
(another user) cannot run a task.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omfs._util import atomic_write
from omfs.errors import ClusterUnavailableError

__all__ = ["ClusterTLS", "make_tls", "secure_folder"]


@dataclass(frozen=True)
class ClusterTLS:
    """The certificate (also the cluster's only CA) and key files of one cluster."""

    cert: Path
    key: Path

    @classmethod
    def at(cls, folder: Path, stem: str) -> ClusterTLS:
        return cls(folder / f"{stem}-cert.pem", folder / f"{stem}-key.pem")

    def exists(self) -> bool:
        return self.cert.is_file() and self.key.is_file()

    def cli_args(self) -> list[str]:
        """The ``dask scheduler`` / ``dask worker`` options that make it use these files."""
        cert, key = str(self.cert), str(self.key)
        return ["--tls-ca-file", cert, "--tls-cert", cert, "--tls-key", key]

    def security(self) -> Any:
        """A ``distributed.Security`` for every role, encryption required; a clear error
        when this process cannot read the files (they belong to another user)."""
        from distributed.security import Security

        for path in (self.cert, self.key):
            try:
                with open(path, "rb"):
                    pass
            except OSError as exc:
                raise ClusterUnavailableError(
                    f"Cannot read the cluster's certificate file {path} ({exc.strerror}): only "
                    "the user who started the cluster can connect to it. Start your own "
                    "(`om cluster start`), or give --cluster / $OMFS_CLUSTER."
                ) from None
        cert, key = str(self.cert), str(self.key)
        roles = ("client", "scheduler", "worker")
        files = {f"tls_{r}_{part}": v for r in roles for part, v in (("cert", cert), ("key", key))}
        return Security(require_encryption=True, tls_ca_file=cert, **files)

    def remove(self) -> None:
        for path in (self.cert, self.key):
            with contextlib.suppress(OSError):
                path.unlink()


def secure_folder(folder: Path) -> Path:
    """Make ``folder`` (mode 0700), or tighten it to 0700: it must be this user's own, not a
    shared or symlinked one, since it holds the cluster's key."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        folder.mkdir(mode=0o700)
    info = os.lstat(folder)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        problem = "is a symbolic link" if stat.S_ISLNK(info.st_mode) else "is not a folder"
    elif info.st_uid != os.geteuid():
        problem = f"belongs to another user (uid {info.st_uid})"
    elif info.st_mode & stat.S_ISVTX and info.st_mode & 0o002:
        problem = "is shared (world-writable, sticky)"
    else:
        if stat.S_IMODE(info.st_mode) != 0o700:
            os.chmod(folder, 0o700)
        return folder
    raise ClusterUnavailableError(
        f"The omfs state folder {folder} {problem}; it must be a folder of your own, since "
        "it holds the cluster's key. Set $OMFS_STATE_DIR to one (omfs makes it, mode 0700)."
    )


def make_tls(folder: Path, stem: str, *, days: int = 365) -> ClusterTLS:
    """Make a new certificate and key for one cluster in ``folder`` (mode 0600 each)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())  # fast to make, unlike RSA-2048
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"omfs-cluster-{stem}")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    tls = ClusterTLS.at(folder, stem)
    atomic_write(
        tls.key,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        mode=0o600,
    )
    atomic_write(tls.cert, cert.public_bytes(serialization.Encoding.PEM), mode=0o600)
    return tls

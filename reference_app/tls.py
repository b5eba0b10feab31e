"""TLS for the messenger: HTTPS and wss:// at the edge (uvicorn), and between the gateway and the gRPC services.

TLS gives a connection two things: nobody on the way can read or change it (encryption with integrity), and the
client knows WHO answers (the server shows a certificate signed by an authority the client trusts, for the name
the client asked for). The second half is the one people get wrong: a client that trusts any certificate is
encrypted, and still talks to whoever sits in the middle.

- **Our own authority.** The internal names (``chat``, ``127.0.0.1``) are ours; no public authority signs them.
  So the services trust ONE authority of our own (``grpc.tls_ca_file``), and nothing else. ``make start TLS=1``
  makes it with trustme (workbook/tls.py); in production it comes from your secret store.
- **A private key readable by its owner only.** The key is the server's identity. A key file that other users of
  the machine can read is as good as published, so a service refuses to start with one.
- **Required in prod, optional in local.** Your machine talks to itself over the loopback; a production network
  does not. ``require_tls_in_production`` stops a prod service that has no certificate.
"""

from __future__ import annotations

import stat
from pathlib import Path

import grpc

from .config import ConfigError, Environment, Settings, env_var_name
from .config.settings import GrpcSettings, TlsFiles


def read_private_key(path: Path, *, section: str) -> bytes:
    """The PEM bytes of a private key file, refused when anyone but its owner may read or write it."""
    # exercise 12.1: refuse a private key that others can read
    # hint: path.stat().st_mode holds the permission bits; stat.S_IMODE(mode) keeps only them (e.g. 0o600).
    # hint: The bits for "group" and "others" are 0o077. Any of them set: raise ConfigError naming the setting, env_var_name(section, "tls_key_file"), and the fix (chmod 600).
    # hint: A missing file is a ConfigError too (catch FileNotFoundError), never a traceback: name the setting and the path.
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        raise ConfigError(f"{env_var_name(section, 'tls_key_file')}: no such file {path}") from None
    if mode & 0o077:
        raise ConfigError(
            f"{env_var_name(section, 'tls_key_file')}: {path} may be read by others (mode {mode:o});"
            f" the key is the server's identity: chmod 600 {path}"
        )
    return path.read_bytes()
    # end exercise


def _read(path: Path, *, section: str, field: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{env_var_name(section, field)}: no such file {path}") from None


def server_credentials(cert_file: Path, key_file: Path) -> grpc.ServerCredentials:
    """What a gRPC server listens with: its certificate chain and its private key."""
    # exercise 12.2: the credentials of a gRPC server
    # hint: grpc.ssl_server_credentials([(private_key_pem, certificate_chain_pem)]) takes bytes, the key FIRST.
    # hint: The key comes from read_private_key(key_file, section="grpc"): never read a key without that check.
    # hint: A missing certificate file is a ConfigError naming env_var_name("grpc", "tls_cert_file"), like the key.
    key = read_private_key(key_file, section="grpc")
    chain = _read(cert_file, section="grpc", field="tls_cert_file")
    return grpc.ssl_server_credentials([(key, chain)])
    # end exercise


def channel_credentials(ca_file: Path) -> grpc.ChannelCredentials:
    """What a gRPC client connects with: trust in OUR authority, and in nothing else."""
    # exercise 12.3: the credentials of a gRPC client
    # hint: grpc.ssl_channel_credentials(root_certificates=...) with the bytes of the authority's certificate.
    # hint: Without root_certificates gRPC would trust the system's public authorities instead: they never sign our internal names, and the client would trust whatever they do sign.
    # hint: A missing file is a ConfigError naming env_var_name("grpc", "tls_ca_file").
    return grpc.ssl_channel_credentials(root_certificates=_read(ca_file, section="grpc", field="tls_ca_file"))
    # end exercise


def grpc_server_tls(settings: GrpcSettings) -> grpc.ServerCredentials | None:
    """The server's credentials when ``grpc.tls_cert_file`` is set; None (plain text, local only) when not."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    return server_credentials(settings.tls_cert_file, settings.tls_key_file)


def grpc_client_tls(settings: GrpcSettings) -> grpc.ChannelCredentials | None:
    """The client's credentials when ``grpc.tls_ca_file`` is set; None (plain text, local only) when not."""
    return None if settings.tls_ca_file is None else channel_credentials(settings.tls_ca_file)


def uvicorn_tls_options(settings: TlsFiles) -> dict[str, str]:
    """uvicorn's keyword arguments for HTTPS and wss:// (empty: plain HTTP), after checking the key's file."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return {}
    read_private_key(settings.tls_key_file, section="http")
    return {"ssl_certfile": str(settings.tls_cert_file), "ssl_keyfile": str(settings.tls_key_file)}


def require_tls_in_production(settings: Settings, *, serves_http: bool) -> None:
    """Refuse to start a prod service without TLS: every connection there is encrypted and authenticated.

    Every service needs the gRPC files (it serves gRPC, or calls it); only the gateway (``serves_http``) the HTTP one.
    """
    if settings.env is not Environment.PROD:
        return
    needed = {
        env_var_name("grpc", "tls_cert_file"): settings.grpc.tls_cert_file,
        env_var_name("grpc", "tls_ca_file"): settings.grpc.tls_ca_file,
    }
    if serves_http:
        needed[env_var_name("http", "tls_cert_file")] = settings.http.tls_cert_file
    missing = [name for name, value in needed.items() if value is None]
    if missing:
        raise ConfigError(f"{', '.join(missing)} required when APP_ENV=prod: TLS is not optional there")

"""A certificate authority of the app's own, for ``make start TLS=1`` and the tests: made once with trustme.

trustme is a small, well-kept library made for exactly this: an authority that exists only on this machine, and
certificates it signs for the names we serve (127.0.0.1 and localhost). Its private key stays in memory and is
never written: once the files exist, nobody can sign another certificate that our clients would trust.

The files, in ``<state dir>/tls/``:

- ``ca.pem``: the authority's certificate. Clients trust it (``APP_GRPC__TLS_CA_FILE``; a browser or curl
  with ``--cacert``).
- ``server.pem``: the server's certificate chain, and ``server.key``: its private key (mode 0600).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import trustme

from reference_app.config import env_var_name

NAMES = ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class LocalTls:
    ca_file: Path
    cert_file: Path
    key_file: Path

    def environment(self) -> dict[str, str]:
        """The settings that turn TLS on: HTTPS and wss:// at the gateway, TLS between it and the services."""
        return {
            env_var_name("http", "tls_cert_file"): str(self.cert_file),
            env_var_name("http", "tls_key_file"): str(self.key_file),
            env_var_name("grpc", "tls_cert_file"): str(self.cert_file),
            env_var_name("grpc", "tls_key_file"): str(self.key_file),
            env_var_name("grpc", "tls_ca_file"): str(self.ca_file),
        }


def local_tls(state_dir: Path) -> LocalTls:
    """The authority and the server's certificate in ``state_dir/tls``: the ones there, or new ones."""
    folder = state_dir / "tls"
    tls = LocalTls(folder / "ca.pem", folder / "server.pem", folder / "server.key")
    if tls.ca_file.exists() and tls.cert_file.exists() and tls.key_file.exists():
        return tls
    folder.mkdir(parents=True, exist_ok=True)
    authority = trustme.CA(organization_name="Messenger Workbook local authority")
    issued = authority.issue_cert(*NAMES)
    tls.key_file.touch(mode=0o600)  # created private, before a single byte of the key is in it
    tls.key_file.chmod(0o600)
    issued.private_key_pem.write_to_path(str(tls.key_file))
    tls.cert_file.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
    authority.cert_pem.write_to_path(str(tls.ca_file))
    return tls

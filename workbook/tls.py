"""A certificate authority of the app's own, for ``make start TLS=1`` and the tests: made once with trustme.

trustme is a small, well-kept library made for exactly this: an authority that exists only on this machine, and
certificates it signs for the names we serve (127.0.0.1 and localhost). Its private key stays in memory and is
never written: once the files exist, nobody can sign another certificate that our clients would trust.

The files, in ``<state dir>/tls/``:

- ``ca.pem``: the authority's certificate. Clients trust it (``APP_GRPC__TLS_CA_FILE``; a browser or curl
  with ``--cacert``).
- ``server.pem``: the server's certificate chain, and ``server.key``: its private key (mode 0600).
- ``server-and-key.pem``: both in one file (mode 0600), the form HAProxy wants.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import trustme
from cryptography import x509

from reference_app.config import env_var_name

NAMES = ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class LocalTls:
    ca_file: Path
    cert_file: Path
    key_file: Path

    @property
    def combined_file(self) -> Path:
        return self.cert_file.with_name("server-and-key.pem")

    def environment(self) -> dict[str, str]:
        """The settings that turn TLS on: HTTPS and wss:// at the gateway, TLS between it and the services."""
        return {
            env_var_name("http", "tls_cert_file"): str(self.cert_file),
            env_var_name("http", "tls_key_file"): str(self.key_file),
            env_var_name("grpc", "tls_cert_file"): str(self.cert_file),
            env_var_name("grpc", "tls_key_file"): str(self.key_file),
            env_var_name("grpc", "tls_ca_file"): str(self.ca_file),
        }


def names_of(cert_file: Path) -> set[str]:
    """The names (DNS names and IP addresses) the first certificate of a PEM file is for."""
    certificate = x509.load_pem_x509_certificates(cert_file.read_bytes())[0]
    try:
        alternative = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {str(name.value) for name in alternative}


def local_tls(state_dir: Path, names: Sequence[str] = NAMES) -> LocalTls:
    """The authority and the server's certificate (for ``names``) in ``state_dir/tls``: the ones there, or new."""
    folder = state_dir / "tls"
    tls = LocalTls(folder / "ca.pem", folder / "server.pem", folder / "server.key")
    made = all(path.exists() for path in (tls.ca_file, tls.cert_file, tls.key_file, tls.combined_file))
    # A certificate without a name asked for now would fail every hostname check: then a new authority and one.
    if made and set(names) <= names_of(tls.cert_file):
        for private in (tls.key_file, tls.combined_file):
            private.chmod(0o600)  # as made, whatever happened to the files since
        return tls
    folder.mkdir(parents=True, exist_ok=True)
    authority = trustme.CA(organization_name="Messenger Workbook local authority")
    issued = authority.issue_cert(*names)
    chain = b"".join(blob.bytes() for blob in issued.cert_chain_pems)
    for private, content in (
        (tls.key_file, issued.private_key_pem.bytes()),
        (tls.combined_file, chain + issued.private_key_pem.bytes()),
    ):
        private.touch(mode=0o600)  # created private, before a single byte of the key is in it
        private.chmod(0o600)
        private.write_bytes(content)
    tls.cert_file.write_bytes(chain)
    authority.cert_pem.write_to_path(str(tls.ca_file))
    return tls


def main(argv: list[str] | None = None) -> int:
    """``python -m workbook.tls DIR NAME…``: make the authority and a certificate for NAMEs in DIR/tls (compose)."""
    parser = argparse.ArgumentParser(prog="python -m workbook.tls", description=main.__doc__)
    parser.add_argument("directory", type=Path)
    parser.add_argument("names", nargs="*", default=list(NAMES), help="the names the certificate is for")
    arguments = parser.parse_args(argv)
    tls = local_tls(arguments.directory, [*NAMES, *arguments.names])
    print(f"authority: {tls.ca_file}; certificate: {tls.cert_file}; key: {tls.key_file}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

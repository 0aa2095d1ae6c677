"""A throwaway certificate authority for the emulator: made in memory at start-up with trustme
(the SDK insists on wss://, so the emulator must speak TLS)."""

from __future__ import annotations

import ssl
import tempfile
from pathlib import Path

import trustme


class LocalTLS:
    """A CA and a server certificate for 127.0.0.1/localhost; the CA is written to a temp file
    for clients configured through `SSL_CERT_FILE`."""

    def __init__(self) -> None:
        self._ca = trustme.CA()
        self._cert = self._ca.issue_cert("127.0.0.1", "localhost")
        self._dir = tempfile.TemporaryDirectory(prefix="live-emulator-")
        self.ca_file = str(Path(self._dir.name) / "emulator-ca.pem")
        self._ca.cert_pem.write_to_path(self.ca_file)

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._cert.configure_cert(ctx)
        return ctx

    def client_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        self._ca.configure_trust(ctx)
        return ctx

    def cleanup(self) -> None:
        self._dir.cleanup()

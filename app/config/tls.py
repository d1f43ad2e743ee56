"""TLS start-up check: the certificate and key are loaded once, in the master, before any worker.

gunicorn itself only opens the files when a connection arrives, so a garbage
certificate or a key that does not match it would start a server whose every
handshake fails. Loading the pair here turns that into one clear line and
exit 2, like any other configuration error.
"""

from __future__ import annotations

import ssl

from app.config.settings import ConfigError, Settings


def _no_passphrase() -> bytes:
    raise ConfigError("TLS_KEY_PATH: the private key is encrypted; give the gateway an unencrypted key file")


def check_tls(settings: Settings) -> None:
    if not (settings.tls_cert_path and settings.tls_key_path):
        return
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(settings.tls_cert_path, settings.tls_key_path, password=_no_passphrase)
    except ssl.SSLError as exc:
        reason = exc.reason or "no PEM data"
        raise ConfigError(f"TLS_CERT_PATH/TLS_KEY_PATH: {settings.tls_cert_path!r} and {settings.tls_key_path!r} "
                          f"are not a PEM certificate and its private key (OpenSSL: {reason})") from None
    except OSError as exc:
        raise ConfigError(f"TLS_CERT_PATH/TLS_KEY_PATH: cannot read the certificate or key "
                          f"({exc.strerror or exc})") from None

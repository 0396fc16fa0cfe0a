"""TLS towards the upstream: a private CA bundle and, for mutual TLS, a client certificate.

Without either setting the system's trust store checks an ``https://`` upstream, and its name. A
file that cannot be read, or a certificate that does not match its key, is a start-up error naming
the setting, not a failed first request.
"""

from __future__ import annotations

import ssl

from ..settings import RetentionSettings, SettingsError


def upstream_ssl(settings: RetentionSettings) -> ssl.SSLContext:
    """The SSL context for ``https://`` upstream connections."""
    if not (settings.upstream_ca_bundle or settings.upstream_client_cert):
        return ssl.create_default_context()
    try:
        context = ssl.create_default_context(cafile=settings.upstream_ca_bundle)
    except (OSError, ssl.SSLError) as error:
        raise SettingsError(
            f"upstream_ca_bundle (RETENTION_UPSTREAM_CA_BUNDLE): cannot read {settings.upstream_ca_bundle!r} "
            f"as PEM certificates ({error.__class__.__name__})"
        ) from None
    if settings.upstream_client_cert:
        try:
            context.load_cert_chain(settings.upstream_client_cert, settings.upstream_client_key)
        except (OSError, ssl.SSLError) as error:
            raise SettingsError(
                "upstream_client_cert (RETENTION_UPSTREAM_CLIENT_CERT / RETENTION_UPSTREAM_CLIENT_KEY): cannot load "
                f"{settings.upstream_client_cert!r} as a certificate and key ({error.__class__.__name__})"
            ) from None
    return context

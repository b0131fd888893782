"""A client certificate as each kind of TLS-terminating proxy forwards it (the values of
`client_cert_header_format`), for tests and benchmarks."""

from __future__ import annotations

import base64
import hashlib
import ssl
import urllib.parse


def x5t_s256(pem: str) -> str:
    """RFC 8705 `x5t#S256` of a PEM certificate."""
    der = ssl.PEM_cert_to_DER_cert(pem)
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()


def forms(pem: str) -> dict[str, str]:
    """The header value per format: Apache's PEM with spaces, nginx's URL-encoded PEM,
    HAProxy's base64 DER, RFC 9440's byte sequence, Envoy's XFCC with only `Hash=`."""
    der = ssl.PEM_cert_to_DER_cert(pem)
    b64 = base64.b64encode(der).decode()
    return {
        "pem": pem.replace("\n", " "),
        "url_encoded_pem": urllib.parse.quote(pem, safe=""),
        "der_base64": b64,
        "rfc9440": f":{b64}:",
        "xfcc": "By=spiffe://mesh/api;Hash=" + hashlib.sha256(der).hexdigest() + ';Subject="CN=x,O=y"',
    }

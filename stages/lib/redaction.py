"""Credentials out of every URL the project prints, raises, or writes into manifest.json and the report: a password
or token typed into data.source stays in params.yaml.
"""

from __future__ import annotations

import re

# The secret parts of a URL: user and password (`https://user:secret@host/`), and query values whose names say they
# are credentials (S3's X-Amz-Signature and X-Amz-Credential, `token=`, `sig=`, `key=`, ...), up to the punctuation
# that ends a URL quoted in a message.
_URL_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s]+@")
_SECRET_QUERY = re.compile(
    r"(?i)(?P<name>[?&][^=&\s#]*(?:token|signature|sig|secret|passw|credential|key|auth)[^=&\s#]*=)[^&\s#:'\")]*"
)
REDACTED = "***"


def redact(text: str) -> str:
    """`text` with the credentials of every URL in it replaced by ***: what the project prints, writes into
    manifest.json and the report, or raises, never holds a password or token typed into data.source."""
    text = _URL_USERINFO.sub(rf"\g<scheme>{REDACTED}@", text)
    return _SECRET_QUERY.sub(rf"\g<name>{REDACTED}", text)

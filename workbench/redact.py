"""Secrets never reach the terminal: secret-looking values are masked in everything the CLI prints.

The workbench itself handles no secret (local mode is anonymous, real GCP uses Application Default Credentials
that google-auth reads and never hands to us), but error messages quote what libraries say and environment
values can be echoed. workbench.terminal passes every message through `redact`, `workbench env` masks the value
of any variable whose name looks secret, and the CLI installs `redact_logging()` so that log records of any
library (Beam, google-auth, gRPC's Python side) are masked the same way.

    >>> redact("GET failed: Authorization: Bearer ya29.a0AfB_secret-token")
    'GET failed: Authorization: Bearer ****'
    >>> masked_value("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG"), masked_value("PUBSUB_PROJECT_ID", "p")
    ('****', 'p')
"""

from __future__ import annotations

import logging
import re

MASK = "****"

# Names of variables and fields that hold secrets (AWS_SECRET_ACCESS_KEY, GITHUB_TOKEN, DB_PASSWORD, api_key...).
_SECRET_NAME = re.compile(
    r"(SECRET|TOKEN|PASSWORD|PASSWD|PRIVATE[_-]?KEY|API[_-]?KEY|ACCESS[_-]?KEY|AUTHORIZATION|SESSION[_-]?KEY)",
    re.IGNORECASE,
)

# Secret values recognisable by themselves or by what precedes them; group "secret" is what gets masked.
_SECRET_TEXT = [
    re.compile(r"(?i)\b(?:Bearer|Basic)\s+(?P<secret>[A-Za-z0-9._~+/=-]{8,})"),  # Authorization header values
    re.compile(r"\b(?P<secret>ya29\.[A-Za-z0-9._-]+)"),  # Google OAuth 2.0 access tokens
    re.compile(r"\b(?P<secret>AIza[0-9A-Za-z_-]{30,})"),  # Google API keys
    re.compile(r"\b(?P<secret>(?:AKIA|ASIA)[0-9A-Z]{16})\b"),  # AWS access key ids
    re.compile(r"(?P<secret>-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|$))", re.S),
    re.compile(r"(?i)\b[a-z][a-z0-9+.-]*://[^/\s:@]+:(?P<secret>[^@\s/]+)@"),  # user:password@ in URLs
    # NAME=value, NAME: value, "name": "value" where the name looks secret
    re.compile(
        r"""(?ix)\b[\w.-]*(?:secret|token|password|passwd|private[_-]?key|api[_-]?key|access[_-]?key)[\w.-]*
            ["']?\s*[:=]\s*["']?(?P<secret>(?!\*\*\*\*)[^\s"',;}]{4,})"""
    ),
]


def looks_secret(name: str) -> bool:
    """True for a variable or field name that usually holds a secret."""
    return bool(_SECRET_NAME.search(name))


def masked_value(name: str, value: str) -> str:
    """The value to show for variable `name`: masked when the name looks secret or the value does."""
    if looks_secret(name) and value:
        return MASK
    return redact(value)


def redact(text: str) -> str:
    """The text with every secret-looking value replaced by ****."""
    if not text:
        return text
    for pattern in _SECRET_TEXT:
        text = pattern.sub(_mask_group, text)
    return text


def _mask_group(match: re.Match[str]) -> str:
    start, end = match.span("secret")
    whole = match.group(0)
    offset = match.start()
    return whole[: start - offset] + MASK + whole[end - offset :]


def redact_logging() -> None:
    """Mask secret-looking values in every log record this process creates from now on (idempotent)."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "redacts", False):
        return

    def factory(*args, **kwargs) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: leave it for logging to report as it would
            return record
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return record

    factory.redacts = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)

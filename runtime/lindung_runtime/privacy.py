"""Masking of personal data: a full NIK, phone number, name or birth date never reaches a log,
a span, a dead letter's headers or a mail.

NIKs and mobile numbers are found by their shape, however they are written: people and systems put
any separator between any digits ("5318-01-01-0190-0001", "5318 0101 0190 0001", a URL's
"5318%200101..."). Names cannot be found by shape; they leak through error messages that quote
their input (pydantic's `input_value=...`, SQL parameters), so `scrub_text` hides those parts.
"""

from __future__ import annotations

import re
from typing import Any

# ASCII digits only ([0-9], not \d, which also matches other scripts' digits). Between any two
# digits, up to three separators: whitespace, . - _ / + ( ), Unicode dashes, or their URL escapes.
_SEP = r"(?:[\s._/+()\-\u2010-\u2015]|%(?:20|09|2[bBdDeEfF]|28|29|5[fF]))"
# Not in the middle of a number (a %XX escape just before is a separator, not a digit).
_START = r"(?:(?<![0-9])|(?<=%[0-9A-Fa-f]{2}))"
_NIK_LIKE = re.compile(_START + r"[0-9](?:" + _SEP + r"{0,3}[0-9]){15}(?![0-9])")
_PHONE_LIKE = re.compile(
    _START + r"(?:\+62|62|0)" + _SEP + r"{0,2}8(?:" + _SEP + r"{0,2}[0-9]){7,12}(?![0-9])"
)
_ESCAPE_OR_CHAR = re.compile(r"%[0-9A-Fa-f]{2}|.", re.DOTALL)

# Birth-date-like dates: 31/12/1990, 31-12-1990, 31.12.1990, 1990-12-31, and Python's
# datetime.date(1990, 12, 31) as reprs show it.
_DATE_LIKE = re.compile(
    r"(?<![0-9])(?:"
    r"[0-3]?[0-9][/.\-][01]?[0-9][/.\-](?:1[89]|20)[0-9]{2}"
    r"|(?:1[89]|20)[0-9]{2}[/.\-][01]?[0-9][/.\-][0-3]?[0-9]"
    r"|(?<=date\()(?:1[89]|20)[0-9]{2}, ?[0-9]{1,2}, ?[0-9]{1,2}"
    r")(?![0-9])"
)
# pydantic quotes the invalid input (a whole event, with its name) in its error text.
_PYDANTIC_INPUT = re.compile(r"input_value=.*, input_type=([A-Za-z_]\w*)\]")
# SQLAlchemy quotes a failed statement's parameters unless the engine hides them.
_SQL_PARAMETERS = re.compile(r"\[parameters: [^\n]*")


def mask_nik(nik: str) -> str:
    """Keep the region (first four) and the serial (last four): `5318********0001`."""
    digits = nik.strip()
    if len(digits) <= 8:
        return "*" * len(digits)
    return digits[:4] + "*" * (len(digits) - 8) + digits[-4:]


def mask_phone(phone: str) -> str:
    """Keep the country/operator prefix and the last three digits: `+6281*******890`."""
    phone = phone.strip()
    if len(phone) <= 7:
        return "*" * len(phone)
    return phone[:5] + "*" * (len(phone) - 8) + phone[-3:]


def mask_text(text: str) -> str:
    """Mask every NIK-like run of 16 digits (whatever separates them) and every Indonesian
    mobile number in free text. Two dates in a row (16 digits) are masked too: over-masking a
    log line is the price of never missing a NIK written with odd separators."""
    # Phones first: a NIK-like run may otherwise span two adjacent phone numbers and leave most
    # of each visible. (16 contiguous digits are never a phone number.)
    text = _PHONE_LIKE.sub(lambda m: _mask_digits(m.group(0), keep_head=4, keep_tail=3), text)
    return _NIK_LIKE.sub(lambda m: _mask_digits(m.group(0), keep_head=4, keep_tail=4), text)


def scrub_text(text: str) -> str:
    """`mask_text`, and also hide what error texts quote: pydantic's input values, SQL
    parameters and birth-date-like dates. For exception messages, tracebacks, span attributes
    and dead letters' headers, which may quote a worker's record (name included)."""
    text = _PYDANTIC_INPUT.sub(r"input_value=<hidden>, input_type=\1]", text)
    text = _SQL_PARAMETERS.sub("[parameters hidden]", text)
    text = mask_text(text)
    return _DATE_LIKE.sub(lambda m: _mask_digits(m.group(0), keep_head=0, keep_tail=0), text)


def _mask_digits(text: str, keep_head: int, keep_tail: int) -> str:
    """Star the digits between the first `keep_head` and the last `keep_tail`; keep separators
    (a %XX escape is a separator, its hex digits are not the number's)."""
    tokens = _ESCAPE_OR_CHAR.findall(text)
    positions = [i for i, token in enumerate(tokens) if "0" <= token <= "9"]
    hidden = set(positions[keep_head : len(positions) - keep_tail])
    return "".join("*" if i in hidden else token for i, token in enumerate(tokens))


def mask_values(value: Any) -> Any:
    """Mask recursively inside log event dictionaries, lists and strings."""
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, dict):
        return {k: mask_values(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(mask_values(v) for v in value)
    return value

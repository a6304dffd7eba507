"""Masking of personal numbers: a full NIK or phone number never reaches a log or a mail."""

from __future__ import annotations

import re
from typing import Any

# ASCII digits only ([0-9], not \d, which also matches other scripts' digits), and separators
# as people write them: "5318 0101 0190 0001", "+62 812-3456-7890".
_NIK_LIKE = re.compile(r"(?<![0-9])[0-9]{4}(?:[ .-]?[0-9]{4}){3}(?![0-9])")
_PHONE_LIKE = re.compile(r"(?<![0-9*])(?:\+62|62|0)[ -]?8[0-9](?:[ -]?[0-9]){6,11}(?![0-9])")


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
    """Mask every NIK-like run of 16 digits and every Indonesian mobile number in free text."""
    text = _NIK_LIKE.sub(lambda m: _mask_digits(m.group(0), keep_head=4, keep_tail=4), text)
    return _PHONE_LIKE.sub(lambda m: _mask_digits(m.group(0), keep_head=4, keep_tail=3), text)


def _mask_digits(text: str, keep_head: int, keep_tail: int) -> str:
    """Star the digits between the first `keep_head` and the last `keep_tail`; keep separators."""
    positions = [i for i, ch in enumerate(text) if "0" <= ch <= "9"]
    hidden = set(positions[keep_head : len(positions) - keep_tail])
    return "".join("*" if i in hidden else ch for i, ch in enumerate(text))


def mask_values(value: Any) -> Any:
    """Mask recursively inside log event dictionaries, lists and strings."""
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, dict):
        return {k: mask_values(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(mask_values(v) for v in value)
    return value

"""Masking of personal numbers: a full NIK or phone number never reaches a log or a mail."""

from __future__ import annotations

import re
from typing import Any

_NIK_RUN = re.compile(r"(?<!\d)(\d{4})(\d{8})(\d{4})(?!\d)")
_PHONE = re.compile(r"(?<![\d*])(\+?62|0)(8\d)(\d{4,9})(\d{3})(?!\d)")


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
    text = _NIK_RUN.sub(lambda m: m.group(1) + "*" * 8 + m.group(3), text)
    return _PHONE.sub(lambda m: mask_phone(m.group(0)), text)


def mask_values(value: Any) -> Any:
    """Mask recursively inside log event dictionaries, lists and strings."""
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, dict):
        return {k: mask_values(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(mask_values(v) for v in value)
    return value

"""Pure rules for a registration request: what makes it acceptable, and its normal form.

No I/O and no clock. Every error is a stable code with a message in Bahasa Indonesia and English.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import date
from functools import cached_property
from typing import Literal

import phonenumbers
from stdnum.exceptions import InvalidComponent, InvalidFormat, InvalidLength, ValidationError
from stdnum.id import nik as stdnum_nik

from lindung_contracts import FieldError, RegistrationRequested

MAX_NAME_LENGTH = 100
MAX_PLACE_LENGTH = 100
WORKER_NAMESPACE = uuid.UUID("4f1c9c55-6a57-4c8e-9a86-3b1f3c1d2a10")

_MESSAGES: dict[str, str] = {
    "nik_required": "NIK wajib diisi / NIK is required",
    "nik_invalid_format": "NIK hanya boleh berisi angka / NIK must contain digits only",
    "nik_invalid_length": "NIK harus 16 digit / NIK must be 16 digits",
    "nik_invalid_component": (
        "NIK tidak valid: kode wilayah atau tanggal lahir di dalamnya salah / "
        "NIK is not valid: its region code or embedded birth date is wrong"
    ),
    "name_required": "Nama lengkap wajib diisi / Full name is required",
    "name_too_long": (
        f"Nama maksimal {MAX_NAME_LENGTH} karakter / Name is at most {MAX_NAME_LENGTH} characters"
    ),
    "birth_date_required": "Tanggal lahir wajib diisi / Birth date is required",
    "birth_date_invalid": (
        "Tanggal lahir tidak valid (format YYYY-MM-DD atau DD/MM/YYYY) / "
        "Birth date is not valid (use YYYY-MM-DD or DD/MM/YYYY)"
    ),
    "gender_invalid": (
        "Jenis kelamin harus M/L (laki-laki) atau F/P (perempuan) / Gender must be M or F"
    ),
    "village_required": "Desa/Kelurahan wajib diisi / Village is required",
    "district_required": "Kecamatan wajib diisi / District is required",
    "place_too_long": (
        f"Nama tempat maksimal {MAX_PLACE_LENGTH} karakter / "
        f"Place name is at most {MAX_PLACE_LENGTH} characters"
    ),
    "phone_invalid": "Nomor HP tidak valid / Phone number is not valid",
    "occupation_too_long": "Pekerjaan maksimal 100 karakter / Occupation is at most 100 characters",
    "program_id_required": "Program wajib diisi / Programme is required",
    "program_unknown": (
        "Program tidak dikenal: belum diterbitkan atau salah tulis / "
        "Unknown programme: not published (yet), or misspelt"
    ),
    "text_invalid_characters": (
        "Isian mengandung karakter yang tidak sah / The value contains characters that are "
        "not allowed"
    ),
}

_GENDERS: dict[str, Literal["M", "F"]] = {
    "M": "M",
    "L": "M",
    "LAKI-LAKI": "M",
    "LAKI LAKI": "M",
    "MALE": "M",
    "PRIA": "M",
    "F": "F",
    "P": "F",
    "PEREMPUAN": "F",
    "FEMALE": "F",
    "WANITA": "F",
}


def field_error(field: str, code: str) -> FieldError:
    return FieldError(field=field, code=code, message=_MESSAGES[code])


@dataclass(frozen=True)
class ValidRegistration:
    program_id: str
    nik: str
    full_name: str
    birth_date: date
    gender: Literal["M", "F"]
    occupation: str
    village: str
    district: str
    phone: str | None

    @cached_property
    def worker_id(self) -> str:
        return worker_id_for(self.program_id, self.nik)


def worker_id_for(program_id: str, nik: str) -> str:
    """Deterministic: the same NIK in the same programme is the same worker, even on replay."""
    return str(uuid.uuid5(WORKER_NAMESPACE, f"{program_id}/{nik}"))


def validate_registration(
    request: RegistrationRequested,
) -> ValidRegistration | list[FieldError]:
    """The normalised registration, or every field error at once (staff fix a row in one go)."""
    errors: list[FieldError] = []
    program_id = request.program_id.strip()
    if not program_id:
        errors.append(field_error("program_id", "program_id_required"))

    nik = normalise_nik(request.nik)
    if isinstance(nik, FieldError):
        errors.append(nik)

    full_name = " ".join(request.full_name.split())
    if not full_name:
        errors.append(field_error("full_name", "name_required"))
    elif len(full_name) > MAX_NAME_LENGTH:
        errors.append(field_error("full_name", "name_too_long"))

    birth_date = parse_date(request.birth_date)
    if not request.birth_date.strip():
        errors.append(field_error("birth_date", "birth_date_required"))
    elif birth_date is None:
        errors.append(field_error("birth_date", "birth_date_invalid"))

    gender = _GENDERS.get(request.gender.strip().upper())
    if gender is None:
        errors.append(field_error("gender", "gender_invalid"))

    village = " ".join(request.village.split())
    district = " ".join(request.district.split())
    for field, value, required in (
        ("village", village, "village_required"),
        ("district", district, "district_required"),
    ):
        if not value:
            errors.append(field_error(field, required))
        elif len(value) > MAX_PLACE_LENGTH:
            errors.append(field_error(field, "place_too_long"))

    occupation = " ".join(request.occupation.split())
    if len(occupation) > 100:
        errors.append(field_error("occupation", "occupation_too_long"))

    phone = normalise_phone(request.phone) if request.phone and request.phone.strip() else None
    if isinstance(phone, FieldError):
        errors.append(phone)

    for field, text in (
        ("full_name", full_name),
        ("village", village),
        ("district", district),
        ("occupation", occupation),
    ):
        if has_invalid_characters(text):
            errors = [e for e in errors if e.field != field]
            errors.append(field_error(field, "text_invalid_characters"))

    if errors:
        return errors
    assert isinstance(nik, str) and birth_date is not None and gender is not None
    assert phone is None or isinstance(phone, str)
    return ValidRegistration(
        program_id=program_id,
        nik=nik,
        full_name=full_name,
        birth_date=birth_date,
        gender=gender,
        occupation=occupation,
        village=village,
        district=district,
        phone=phone,
    )


def has_invalid_characters(text: str) -> bool:
    """Control characters (NUL, escape codes) or lone surrogates: no name or place has them, and
    PostgreSQL cannot store NUL."""
    return any(unicodedata.category(ch) in ("Cc", "Cs") for ch in text)


def printable(text: str, limit: int) -> str:
    """A value as given, made safe to echo back in an event (lone surrogates and controls
    replaced)."""
    return "".join(
        "\ufffd" if unicodedata.category(ch) in ("Cc", "Cs") else ch for ch in text[:limit]
    )


def normalise_nik(raw: str) -> str | FieldError:
    """A NIK as 16 digits, checked by python-stdnum (length, region, embedded birth date)."""
    if not raw or not raw.strip():
        return field_error("nik", "nik_required")
    if len(raw) > 64:
        return field_error("nik", "nik_invalid_length")
    try:
        nik = str(stdnum_nik.validate(raw))
    except InvalidLength:  # a subclass of InvalidFormat in stdnum: test it first
        return field_error("nik", "nik_invalid_length")
    except InvalidFormat:
        return field_error("nik", "nik_invalid_format")
    except (InvalidComponent, ValidationError):
        return field_error("nik", "nik_invalid_component")
    day = int(nik[6:8])
    if not (1 <= day <= 31 or 41 <= day <= 71):  # stdnum reads the day modulo 40: 81-99 pass it
        return field_error("nik", "nik_invalid_component")
    return nik


_DMY = re.compile(r"^([0-9]{1,2})[/.-]([0-9]{1,2})[/.-]([0-9]{4})$")
_ISO = re.compile(r"^([0-9]{4})-([0-9]{2})-([0-9]{2})(?:[T ]00:00(?::00(?:\.0+)?)?)?$")


def parse_date(raw: str) -> date | None:
    """ISO `YYYY-MM-DD` (also with a midnight time, as spreadsheets export dates) or Indonesian
    `DD/MM/YYYY`; anything else is not a date."""
    text = raw.strip()
    try:
        if match := _DMY.match(text):
            day, month, year = (int(g) for g in match.groups())
            return date(year, month, day)
        if match := _ISO.match(text):
            year, month, day = (int(g) for g in match.groups())
            return date(year, month, day)
    except ValueError:
        return None
    return None


def normalise_phone(raw: str) -> str | FieldError:
    """Indonesian numbers in any common form (0812..., 62812..., +62 812-...) as E.164."""
    # Only digits and the usual separators: phonenumbers would read letters as keypad digits.
    if len(raw) > 32 or not re.fullmatch(r"\+?[0-9 ().-]+", raw.strip()):
        return field_error("phone", "phone_invalid")
    try:
        number = phonenumbers.parse(raw, "ID")
    except phonenumbers.NumberParseException:
        return field_error("phone", "phone_invalid")
    if not phonenumbers.is_valid_number(number):
        return field_error("phone", "phone_invalid")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)

"""Indonesian month names, for what staff read: mails and pages write dates with the month's
name (31 Desember 2025), never 31/12/2025, which readers take day-first or month-first."""

from __future__ import annotations

BULAN = (
    "Januari",
    "Februari",
    "Maret",
    "April",
    "Mei",
    "Juni",
    "Juli",
    "Agustus",
    "September",
    "Oktober",
    "November",
    "Desember",
)
BULAN_SINGKAT = ("Jan", "Feb", "Mar", "Apr", "Mei", "Jun", "Jul", "Agu", "Sep", "Okt", "Nov", "Des")

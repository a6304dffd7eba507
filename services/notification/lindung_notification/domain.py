"""Pure composition of the staff digest: the words, the numbers and the CSV, in Bahasa Indonesia.

One digest per programme and alert window, never one mail per worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from lindung_runtime.privacy import mask_nik
from lindung_runtime.spreadsheets import csv_text

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


@dataclass(frozen=True)
class DigestWorker:
    worker_id: str
    nik: str
    full_name: str
    village: str
    district: str


@dataclass(frozen=True)
class DigestMail:
    subject: str
    body: str
    attachment_name: str
    attachment_csv: str
    recipients: list[str]


def tanggal(day: date) -> str:
    """`31 Desember 2025`."""
    return f"{day.day} {BULAN[day.month - 1]} {day.year}"


def angka(number: int) -> str:
    """Indonesian thousands separator: `5.600`."""
    return f"{number:,}".replace(",", ".")


def compose_digest(
    program_name: str,
    sponsor: str,
    program_id: str,
    coverage_end: date,
    days_left: int,
    workers: list[DigestWorker],
    recipients: list[str],
) -> DigestMail:
    count = angka(len(workers))
    subject = (
        f"[Lindung] Kepesertaan {count} peserta {program_name} berakhir {tanggal(coverage_end)} "
        f"({days_left} hari lagi)"
    )
    body = "\n".join(
        [
            f"Yth. Tim {sponsor},",
            "",
            f"Kepesertaan BPJS Ketenagakerjaan (JKK dan JKM) untuk {count} peserta pekerja rentan "
            f'dalam program "{program_name}" ({program_id}) akan berakhir pada '
            f"{tanggal(coverage_end)}, {days_left} hari lagi.",
            "",
            "Agar perlindungan tidak terputus, mohon segera proses perpanjangan kepesertaan "
            "(perjanjian kerja sama dan penganggaran iuran) sebelum tanggal tersebut.",
            "",
            "Daftar peserta terlampir (NIK disamarkan untuk melindungi data pribadi).",
            "",
            "Salam,",
            "Lindung — layanan kepesertaan pekerja rentan",
        ]
    )
    # Names and places are as the intake sent them: csv_text keeps a `=HYPERLINK(…)` from running
    # when staff open the attachment.
    attachment = csv_text(
        [
            [
                "worker_id",
                "nik",
                "nama_lengkap",
                "desa_kelurahan",
                "kecamatan",
                "akhir_kepesertaan",
            ],
            *(
                [
                    worker.worker_id,
                    mask_nik(worker.nik),
                    worker.full_name,
                    worker.village,
                    worker.district,
                    coverage_end.isoformat(),
                ]
                for worker in sorted(workers, key=lambda w: (w.district, w.village, w.full_name))
            ),
        ]
    )
    return DigestMail(
        subject=subject,
        body=body,
        attachment_name=f"peserta-berakhir-{coverage_end.isoformat()}-{days_left}hari.csv",
        attachment_csv=attachment,
        recipients=recipients,
    )

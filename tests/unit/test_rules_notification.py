"""The staff digest: Bahasa Indonesia wording, Indonesian number and date formats, a masked CSV."""

from __future__ import annotations

import csv
import io
from datetime import date

import pytest

from lindung_notification.domain import DigestMail, DigestWorker, angka, compose_digest, tanggal
from lindung_registration.domain import worker_id_for

PROGRAM_ID = "sbd-pekerja-rentan-2025q4"
PROGRAM_NAME = "Perlindungan Pekerja Rentan Kab. Sumba Barat Daya 2025"
SPONSOR = "Pemerintah Kabupaten Sumba Barat Daya (APBD)"
END = date(2025, 12, 31)
RECIPIENTS = ["disnaker@sumbabaratdayakab.go.id"]
DISTRICTS = ["Loura", "Kodi", "Wewewa Barat", "Kota Tambolaka"]


def founding_workers(count: int = 5_600) -> list[DigestWorker]:
    workers = []
    for serial in range(1, count + 1):
        nik = f"5318{serial % 11 + 1:02d}0101{serial % 100:02d}{serial % 10_000:04d}"
        district = DISTRICTS[serial % len(DISTRICTS)]
        workers.append(
            DigestWorker(
                worker_id=worker_id_for(PROGRAM_ID, nik),
                nik=nik,
                full_name=f"Pekerja {serial}",
                village=f"Desa {district} {serial % 15 + 1:02d}",
                district=district,
            )
        )
    return workers


@pytest.fixture(scope="module")
def workers() -> list[DigestWorker]:
    return founding_workers()


@pytest.fixture(scope="module")
def mail(workers: list[DigestWorker]) -> DigestMail:
    return compose_digest(PROGRAM_NAME, SPONSOR, PROGRAM_ID, END, 30, workers, RECIPIENTS)


@pytest.mark.parametrize(
    ("number", "text"),
    [
        (0, "0"),
        (7, "7"),
        (999, "999"),
        (1_000, "1.000"),
        (5_600, "5.600"),
        (282_240_000, "282.240.000"),
    ],
)
def test_angka_uses_dots_as_thousands_separators(number: int, text: str) -> None:
    assert angka(number) == text


@pytest.mark.parametrize(
    ("day", "text"),
    [
        (date(2025, 12, 31), "31 Desember 2025"),
        (date(2026, 1, 1), "1 Januari 2026"),
        (date(2025, 5, 9), "9 Mei 2025"),
        (date(2025, 8, 17), "17 Agustus 2025"),
    ],
)
def test_tanggal_writes_the_month_in_bahasa_indonesia(day: date, text: str) -> None:
    assert tanggal(day) == text


def test_subject_gives_count_date_and_days_left_in_bahasa_indonesia(mail: DigestMail) -> None:
    assert mail.subject == (
        f"[Lindung] Kepesertaan 5.600 peserta {PROGRAM_NAME} "
        "berakhir 31 Desember 2025 (30 hari lagi)"
    )


def test_body_addresses_the_sponsor_and_states_count_date_and_days_left(mail: DigestMail) -> None:
    assert mail.body.startswith(f"Yth. Tim {SPONSOR},")
    assert "5.600 peserta" in mail.body
    assert "31 Desember 2025, 30 hari lagi" in mail.body
    assert PROGRAM_ID in mail.body and PROGRAM_NAME in mail.body
    assert "perpanjangan kepesertaan" in mail.body
    assert "NIK disamarkan" in mail.body
    assert "December" not in mail.body and "5,600" not in mail.body


def test_days_left_follows_the_alert_window(workers: list[DigestWorker]) -> None:
    week = compose_digest(PROGRAM_NAME, SPONSOR, PROGRAM_ID, END, 7, workers[:3], RECIPIENTS)
    assert "(7 hari lagi)" in week.subject
    assert "3 peserta" in week.subject
    assert "7 hari lagi" in week.body
    assert week.attachment_name == "peserta-berakhir-2025-12-31-7hari.csv"


def test_recipients_are_passed_through(mail: DigestMail) -> None:
    assert mail.recipients == RECIPIENTS


def test_attachment_has_a_header_and_one_row_per_worker(
    mail: DigestMail, workers: list[DigestWorker]
) -> None:
    rows = list(csv.reader(io.StringIO(mail.attachment_csv)))
    assert rows[0] == [
        "worker_id",
        "nik",
        "nama_lengkap",
        "desa_kelurahan",
        "kecamatan",
        "akhir_kepesertaan",
    ]
    body = rows[1:]
    assert len(body) == len(workers) == 5_600
    assert sorted(r[0] for r in body) == sorted(w.worker_id for w in workers)
    assert {r[5] for r in body} == {"2025-12-31"}
    assert mail.attachment_name == "peserta-berakhir-2025-12-31-30hari.csv"


def test_attachment_rows_carry_the_masked_nik_and_the_workers_details(
    mail: DigestMail, workers: list[DigestWorker]
) -> None:
    by_id = {w.worker_id: w for w in workers}
    for worker_id, masked, name, village, district, _ in list(
        csv.reader(io.StringIO(mail.attachment_csv))
    )[1:]:
        worker = by_id[worker_id]
        assert masked == worker.nik[:4] + "********" + worker.nik[-4:]
        assert (name, village, district) == (worker.full_name, worker.village, worker.district)


def test_attachment_is_sorted_by_district_village_and_name(mail: DigestMail) -> None:
    rows = list(csv.reader(io.StringIO(mail.attachment_csv)))[1:]
    keys = [(r[4], r[3], r[2]) for r in rows]
    assert keys == sorted(keys)


def test_single_worker_nik_is_masked_like_5318_stars_0001() -> None:
    worker = DigestWorker("w-1", "5318010101900001", "Ana Bili", "Desa Loura 01", "Loura")
    mail = compose_digest(PROGRAM_NAME, SPONSOR, PROGRAM_ID, END, 14, [worker], RECIPIENTS)
    rows = list(csv.reader(io.StringIO(mail.attachment_csv)))
    assert rows[1][1] == "5318********0001"
    assert "1 peserta" in mail.subject


def test_full_nik_appears_nowhere_in_the_mail(
    mail: DigestMail, workers: list[DigestWorker]
) -> None:
    everything = "\n".join([mail.subject, mail.body, mail.attachment_name, mail.attachment_csv])
    leaked = [w.nik for w in workers if w.nik in everything]
    assert leaked == []


def test_empty_digest_still_has_a_header_only_attachment() -> None:
    mail = compose_digest(PROGRAM_NAME, SPONSOR, PROGRAM_ID, END, 7, [], RECIPIENTS)
    assert "0 peserta" in mail.subject
    assert len(list(csv.reader(io.StringIO(mail.attachment_csv)))) == 1


# --- a renewal already published ------------------------------------------------------------------


def test_without_a_renewal_the_mail_asks_for_one(mail: DigestMail) -> None:
    assert "mohon segera proses perpanjangan kepesertaan" in mail.body
    assert "sudah diterbitkan" not in mail.body
    assert "diperpanjang hingga" not in mail.subject


def test_with_a_renewal_published_the_mail_says_the_carried_workers_go_on(
    workers: list[DigestWorker],
) -> None:
    renewed = compose_digest(
        PROGRAM_NAME,
        SPONSOR,
        PROGRAM_ID,
        END,
        30,
        workers[:3],
        RECIPIENTS,
        renewed_until=date(2026, 12, 31),
    )
    assert renewed.subject == (
        f"[Lindung] Kepesertaan 3 peserta {PROGRAM_NAME} berakhir 31 Desember 2025 "
        "(30 hari lagi, diperpanjang hingga 31 Desember 2026)"
    )
    assert "Perpanjangan program sudah diterbitkan hingga 31 Desember 2026" in renewed.body
    assert "dibawa ke masa program berikutnya tetap terlindungi" in renewed.body
    assert "mohon segera proses perpanjangan" not in renewed.body
    # Still the expiring mail: the same news, the same attachment.
    assert "akan berakhir pada 31 Desember 2025, 30 hari lagi" in renewed.body
    assert renewed.attachment_name == "peserta-berakhir-2025-12-31-30hari.csv"
    assert len(list(csv.reader(io.StringIO(renewed.attachment_csv)))) == 4

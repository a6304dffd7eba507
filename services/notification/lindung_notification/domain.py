"""Pure rules of the staff digest: which digest each alerted worker joins, and its mail (the
words, the numbers and the CSV, in Bahasa Indonesia).

One digest per programme and alert window (or per programme's ending), never one mail per worker.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal

from lindung_runtime.bahasa import BULAN
from lindung_runtime.privacy import mask_nik
from lindung_runtime.spreadsheets import csv_text


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
    *,
    renewed_until: date | None = None,
) -> DigestMail:
    """The mail of an expiring window. With `renewed_until` (a renewal is published already)
    it tells staff the carried workers go on, instead of asking them for a renewal."""
    count = angka(len(workers))
    when = f"{days_left} hari lagi"
    if renewed_until is not None:
        when += f", diperpanjang hingga {tanggal(renewed_until)}"
        action = (
            "Perpanjangan program sudah diterbitkan hingga "
            f"{tanggal(renewed_until)}: peserta yang dibawa ke masa program berikutnya tetap "
            "terlindungi tanpa pendaftaran ulang, dan tidak perlu diajukan perpanjangan lagi."
        )
    else:
        action = (
            "Agar perlindungan tidak terputus, mohon segera proses perpanjangan kepesertaan "
            "(perjanjian kerja sama dan penganggaran iuran) sebelum tanggal tersebut."
        )
    subject = (
        f"[Lindung] Kepesertaan {count} peserta {program_name} berakhir {tanggal(coverage_end)} "
        f"({when})"
    )
    body = _body(
        sponsor,
        f"Kepesertaan BPJS Ketenagakerjaan (JKK dan JKM) untuk {count} peserta pekerja rentan "
        f'dalam program "{program_name}" ({program_id}) akan berakhir pada '
        f"{tanggal(coverage_end)}, {days_left} hari lagi.",
        action,
    )
    return DigestMail(
        subject=subject,
        body=body,
        attachment_name=f"peserta-berakhir-{coverage_end.isoformat()}-{days_left}hari.csv",
        attachment_csv=_attachment(workers, coverage_end),
        recipients=recipients,
    )


def compose_ended_digest(
    program_name: str,
    sponsor: str,
    program_id: str,
    coverage_end: date,
    workers: list[DigestWorker],
    recipients: list[str],
) -> DigestMail:
    """The mail of a programme's ending: the cover has ended (past tense, unlike the expiring
    mail), nobody renewed it, and what staff can still do about it."""
    count = angka(len(workers))
    subject = (
        f"[Lindung] Kepesertaan berakhir: {count} peserta {program_name} per "
        f"{tanggal(coverage_end)}, tidak diperpanjang"
    )
    body = _body(
        sponsor,
        f"Kepesertaan BPJS Ketenagakerjaan (JKK dan JKM) untuk {count} peserta pekerja rentan "
        f'dalam program "{program_name}" ({program_id}) telah berakhir pada '
        f"{tanggal(coverage_end)} dan tidak diperpanjang. Sejak "
        f"{tanggal(coverage_end + timedelta(days=1))} peserta tersebut tidak lagi terlindungi.",
        "Jika pemberi kerja/sponsor ingin melanjutkan perlindungan, mohon proses perpanjangan "
        "program (perjanjian kerja sama dan penganggaran iuran). Tanpa perpanjangan, peserta "
        "harus didaftarkan kembali sebagai kepesertaan baru.",
    )
    return DigestMail(
        subject=subject,
        body=body,
        attachment_name=f"peserta-telah-berakhir-{coverage_end.isoformat()}.csv",
        attachment_csv=_attachment(workers, coverage_end),
        recipients=recipients,
    )


def _body(sponsor: str, news: str, action: str) -> str:
    """The digest's letter: the same greeting, attachment note and signature for every kind."""
    return "\n".join(
        [
            f"Yth. Tim {sponsor},",
            "",
            news,
            "",
            action,
            "",
            "Daftar peserta terlampir (NIK disamarkan untuk melindungi data pribadi).",
            "",
            "Salam,",
            "Lindung — layanan kepesertaan pekerja rentan",
        ]
    )


def _attachment(workers: list[DigestWorker], coverage_end: date) -> str:
    # Names and places are as the intake sent them: csv_text keeps a `=HYPERLINK(…)` from running
    # when staff open the attachment.
    return csv_text(
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


# --- gathering: which digest each alerted worker joins -------------------------------------------


def chain_digest_id(window: str, number: int) -> str:
    """The window's `number`th digest: the window itself, then its follow-ups `<window>#2`, ..."""
    return window if number == 1 else f"{window}#{number}"


def in_window(digest_id: str, window: str) -> bool:
    """Whether `digest_id` is one of the window's digests (its first or a follow-up)."""
    return digest_id == window or digest_id.startswith(f"{window}#")


DigestKind = Literal["expiring", "ended"]


@dataclass(frozen=True)
class DigestItem:
    """One worker for a staff digest, as the handlers read a CoverageExpiring or a CoverageEnded:
    both kinds are gathered by the same code (windows, follow-ups, leases), only the mail
    differs. `window` is the first digest's id; an ending has `days_left` 0."""

    kind: DigestKind
    window: str
    alert_size: int
    program_id: str
    coverage_end: date
    days_left: int
    worker: DigestWorker
    renewed_until: date | None = None

    @property
    def alerted(self) -> Alerted:
        return Alerted(self.worker.worker_id, self.window, self.alert_size)


def ended_window(program_id: str, coverage_end: date) -> str:
    """An ending's window when the event names none (billing's alert_id has the same shape)."""
    return f"{program_id}:{coverage_end.isoformat()}:ended"


def expiring_window(program_id: str, coverage_end: date, days_left: int) -> str:
    """An expiring alert window when the event names none (billing's alert_id's shape)."""
    return f"{program_id}:{coverage_end.isoformat()}:{days_left}d"


@dataclass(frozen=True)
class Alerted:
    """A worker alerted in a window (a DigestItem, as the gathering reads it)."""

    worker_id: str
    window: str
    alert_size: int  # the window's workers, as the alert counted them


@dataclass(frozen=True)
class StoredDigest:
    """A digest as stored: how many workers it expects, whether a dispatcher ever leased it (a
    lease that ran out counts), whether it was sent or failed, and how many workers it has
    (`gathered`: only read for a digest that is no longer open)."""

    expected_size: int
    leased: bool = False
    sent: bool = False
    failed: bool = False
    gathered: int = 0

    @property
    def open(self) -> bool:
        """Still gathering: nobody has leased it to mail it, and it is neither sent nor failed."""
        return not (self.leased or self.sent or self.failed)


@dataclass(frozen=True)
class Joining:
    """An alerted worker who joins `digest_id`."""

    alert: Alerted
    digest_id: str


@dataclass(frozen=True)
class GrownDigest:
    """A digest the batch adds workers to: created (`new`) or stored, and its expected size."""

    digest_id: str
    window: str
    number: int  # 1: the window's first digest; 2, 3, ...: its follow-ups
    new: bool
    expected_size: int


@dataclass(frozen=True)
class Gathering:
    joinings: list[Joining]  # in the batch's order
    digests: list[GrownDigest]  # in the order the batch first adds to them


def gather_batch(
    alerts: Sequence[Alerted],
    digests: Mapping[str, StoredDigest],
    gathered: Mapping[str, AbstractSet[str]],
) -> Gathering:
    """Which digest each alerted worker joins, as if the alerts were handled one by one.

    `digests`: the stored digests of the alerts' windows, by id; `gathered`: the digests each
    alerted worker is in already, by worker id. A worker already in one of the window's digests
    (a redelivery, a re-announcement) is left out, and so is a worker's later alert of the same
    window. The others join the window's first digest that is still open, or a new one after
    the last closed one (`<window>#2`, `#3`, ...): a closed digest has been mailed, or is being
    mailed, with what it had. A digest then expects at least the alert's size less the workers
    of the window's closed digests before it."""
    targets: dict[str, tuple[str, int, int]] = {}  # window: (digest id, number, workers before)
    done: set[tuple[str, str]] = set()
    joinings: list[Joining] = []
    grown: dict[str, GrownDigest] = {}
    for alert in alerts:
        window = alert.window
        if (alert.worker_id, window) in done or any(
            in_window(digest_id, window) for digest_id in gathered.get(alert.worker_id, ())
        ):
            continue
        done.add((alert.worker_id, window))
        if window not in targets:
            targets[window] = _open_digest(window, digests)
        digest_id, number, before = targets[window]
        if digest_id in grown:
            digest = grown[digest_id]
        else:
            stored = digests.get(digest_id)
            digest = GrownDigest(
                digest_id,
                window,
                number,
                new=stored is None,
                expected_size=stored.expected_size if stored is not None else 0,
            )
        grown[digest_id] = GrownDigest(
            digest_id,
            window,
            number,
            digest.new,
            max(digest.expected_size, alert.alert_size - before),
        )
        joinings.append(Joining(alert, digest_id))
    return Gathering(joinings, list(grown.values()))


def _open_digest(window: str, digests: Mapping[str, StoredDigest]) -> tuple[str, int, int]:
    """The window's first digest still open, or the next one to create: its id, its number in
    the window and the workers of the window's closed digests before it."""
    before = 0
    number = 1
    while (digest := digests.get(chain_digest_id(window, number))) is not None and not digest.open:
        before += digest.gathered
        number += 1
    return chain_digest_id(window, number), number, before

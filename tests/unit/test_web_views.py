"""The staff pages' view data: pure functions over rows that SQL already grouped per desa."""

from __future__ import annotations

from datetime import UTC, date, datetime

from lindung_registration.api import FunnelCounts, ProgramSummary, VillageSummary
from lindung_registration.auth import ApiKey
from lindung_registration.db import KnownProgram
from lindung_registration.web import views

OPERATOR = ApiKey(name="ops", role="operator", sha256="0" * 64)
VILLAGE = ApiKey(
    name="desa", role="village", sha256="1" * 64, village="Kalena Wanno", district="Kota Tambolaka"
)
PROGRAM = KnownProgram(
    program_id="sbd",
    name="Pekerja Rentan SBD",
    sponsor="Pemkab Sumba Barat Daya",
    coverage_start=date(2025, 10, 1),
    coverage_end=date(2025, 12, 31),
    published_at=datetime(2025, 10, 29, tzinfo=UTC),
)
TERM_1 = views.TermView(1, date(2025, 10, 1), date(2025, 12, 31), 5600)
TERM_2 = views.TermView(2, date(2026, 1, 1), date(2026, 3, 31), 5600)


def test_the_funnel_counts_rejected_and_ended_beside_the_steps() -> None:
    counts = FunnelCounts(
        registered=10,
        confirmed=8,
        ineligible=2,
        requests_rejected=3,
        invoiced=8,
        paid=8,
        active=6,
        ended=1,
        not_carried=1,
    )
    assert views.funnel_counts(counts) == {
        "registered": 10,
        "confirmed": 8,
        "invoiced": 8,
        "paid": 8,
        "active": 6,
        "rejected": 5,
        "ended": 2,
    }


def test_a_programme_card_knows_the_current_term_the_end_and_the_renewal() -> None:
    during = views.programme_card(PROGRAM, [TERM_1], FunnelCounts(), date(2025, 12, 1))
    assert (during.current, during.last, during.renewal) == (TERM_1, TERM_1, None)
    assert during.days_left == 30

    renewed = views.programme_card(PROGRAM, [TERM_2, TERM_1], FunnelCounts(), date(2025, 12, 20))
    assert renewed.current == TERM_1 and renewed.renewal == TERM_2
    assert renewed.days_left == (date(2026, 3, 31) - date(2025, 12, 20)).days

    later = views.programme_card(PROGRAM, [TERM_1, TERM_2], FunnelCounts(), date(2026, 5, 1))
    assert later.current == TERM_2 and later.renewal is None and later.days_left == -31

    before = views.programme_card(PROGRAM, [TERM_1], FunnelCounts(), date(2025, 9, 1))
    assert before.current == TERM_1

    unknown_terms = views.programme_card(PROGRAM, [], FunnelCounts(), date(2025, 12, 1))
    assert (unknown_terms.current.start, unknown_terms.current.end) == (
        date(2025, 10, 1),
        date(2025, 12, 31),
    )


def test_invoices_add_up_per_term_and_show_their_payment_state() -> None:
    lines = [
        (1, "INV-sbd", 2, 100_800),
        (1, "INV-sbd", 3, 151_200),
        (2, "INV-sbd-T2", 3, 151_200),
    ]
    paid_at = datetime(2025, 10, 30, tzinfo=UTC)
    payments = {"INV-sbd": (252_000, paid_at), "INV-sbd-T2": (100_000, paid_at)}
    found = views.invoices(lines, payments)
    assert [(i.term, i.invoice_id, i.workers, i.amount_idr, i.state) for i in found] == [
        (1, "INV-sbd", 5, 252_000, "Lunas"),
        (2, "INV-sbd-T2", 3, 151_200, "Dibayar sebagian"),
    ]
    assert [i.state for i in views.invoices(lines, {})] == ["Belum dibayar"] * 2


def test_an_operator_has_no_places_to_filter_a_village_key_its_own() -> None:
    summary = ProgramSummary(
        program_id="sbd",
        totals=FunnelCounts(),
        ineligible_by_reason={},
        by_district=[],
        by_village=[
            VillageSummary(district="Kota Tambolaka", village="Kalena Wanno", registered=2)
        ],
    )
    assert views.places_of(summary, OPERATOR) is None
    assert views.places_of(summary, VILLAGE) == [("Kota Tambolaka", "Kalena Wanno")]


def test_a_rejection_lists_codes_with_indonesian_messages_and_masks_for_villages() -> None:
    at = datetime(2025, 10, 29, tzinfo=UTC)
    details = {
        "errors": [
            {"field": "nik", "code": "nik_invalid_length", "message": "NIK harus 16 angka / 16"}
        ]
    }
    seen = views.rejection("registration_rejected", at, "5318010101900001", details, VILLAGE)
    assert seen.nik == "5318********0001"
    assert seen.reasons == [("nik_invalid_length", "NIK harus 16 angka")]
    reasons = {"reasons": [{"code": "quota_exhausted", "message": "Kuota habis / Quota"}]}
    operator = views.rejection("eligibility_rejected", at, "5318010101900001", reasons, OPERATOR)
    assert operator.nik == "5318010101900001"
    assert operator.reasons == [("quota_exhausted", "Kuota habis")]


def test_a_workers_terms_read_from_their_timeline() -> None:
    entries = [
        ("registered", {}),
        (
            "eligibility_confirmed",
            {"term": 1, "coverage_start": "2025-10-01", "coverage_end": "2025-12-31"},
        ),
        ("invoiced", {"term": 1}),
        (
            "coverage_activated",
            {"term": 1, "coverage_start": "2025-10-01", "coverage_end": "2025-12-31"},
        ),
        (
            "eligibility_confirmed",
            {
                "term": 2,
                "carried": True,
                "coverage_start": "2026-01-01",
                "coverage_end": "2026-03-31",
            },
        ),
        ("coverage_ended", {"term": 1, "coverage_end": "2025-12-31"}),
    ]
    first, second = views.term_history(entries)
    assert (first.term, first.steps, first.status) == (
        1,
        ["Layak", "Ditagih", "Aktif", "Berakhir"],
        "ended",
    )
    assert (first.coverage_start, first.coverage_end) == ("2025-10-01", "2025-12-31")
    assert (second.term, second.steps, second.status) == (2, ["Diperpanjang"], "carried")

    not_carried = views.term_history(
        [("eligibility_rejected", {"term": 2, "carried": True, "reasons": []})]
    )
    assert [(h.term, h.status) for h in not_carried] == [(2, "not_carried")]
    refused = views.term_history([("eligibility_rejected", {"reasons": []})])
    assert [(h.term, h.steps, h.status) for h in refused] == [(1, ["Tidak layak"], "")]


def test_per_day_and_per_month_rows_are_summed() -> None:
    rows = [("2025-10-29", 2), (date(2025, 10, 29), 5), ("2025-10-30 00:00:00", 1), (None, 9)]
    assert views.per_day(rows) == {date(2025, 10, 29): 7, date(2025, 10, 30): 1}

    months = [
        (1, "2025-10-01", 3, 33_600),
        (1, date(2025, 10, 1), 3, 16_800),
        (1, "2025-11-01", 2, 16_800),
        (2, "2026-01-01", 3, None),
    ]
    assert views.month_lines(months) == [
        (1, date(2025, 10, 1), 3, 50_400),
        (1, date(2025, 11, 1), 2, 16_800),
        (2, date(2026, 1, 1), 3, 0),
    ]


def test_a_charts_text_names_the_total_the_span_and_the_busiest_day() -> None:
    days = {date(2025, 10, 29): 5_000, date(2025, 10, 30): 600}
    assert views.describe_days("terdaftar", days) == (
        "5.600 peserta terdaftar dari 29 Okt 2025 sampai 30 Okt 2025; terbanyak 5.000 pada "
        "29 Okt 2025."
    )
    assert views.describe_days("aktif", {}) == "Belum ada peserta aktif."


def test_the_indonesian_half_of_a_bilingual_message() -> None:
    assert views.indonesian("NIK tidak valid / NIK is not valid") == "NIK tidak valid"
    assert views.indonesian("Hanya satu bahasa") == "Hanya satu bahasa"

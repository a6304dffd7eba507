"""money bigint

Every Rupiah amount and sum becomes BIGINT: one programme's invoice passes 2**31 - 1
(Rp 2,147,483,647) at ~42,600 workers for three months, and a sponsor's single payment may too.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-05 23:30:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa

from lindung_runtime.migrations import change_column_types

# revision identifiers, used by Alembic.
revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MONEY = {
    "program": ["reported_income_idr"],
    "invoice": ["total_idr", "paid_idr"],
    "invoice_line": ["amount_idr"],
    "payment": ["amount_idr"],
}


def upgrade() -> None:
    """Upgrade schema."""
    change_column_types(MONEY, sa.Integer(), sa.BigInteger())


def downgrade() -> None:
    """Downgrade schema (fails on PostgreSQL once an amount exceeds int4, as it should)."""
    change_column_types(MONEY, sa.BigInteger(), sa.Integer())

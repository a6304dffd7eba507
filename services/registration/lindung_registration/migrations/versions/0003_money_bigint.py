"""money bigint

Every Rupiah amount becomes BIGINT: a sponsor's single payment of a programme's invoice passes
2**31 - 1 (Rp 2,147,483,647), and the projection must hold any amount the contract allows.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05 23:30:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa

from lindung_runtime.migrations import change_column_types

# revision identifiers, used by Alembic.
revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MONEY = {
    "payment_record": ["amount_idr"],
    "worker_status": ["invoiced_idr"],
}


def upgrade() -> None:
    """Upgrade schema."""
    change_column_types(MONEY, sa.Integer(), sa.BigInteger())


def downgrade() -> None:
    """Downgrade schema (fails on PostgreSQL once an amount exceeds int4, as it should)."""
    change_column_types(MONEY, sa.BigInteger(), sa.Integer())

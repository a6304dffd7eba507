"""not carried: a line whose worker a renewal did not carry on ends with its term

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 10:20:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("invoice_line", schema=None) as batch_op:
        batch_op.add_column(sa.Column("not_carried", sa.Text(), nullable=True))
        batch_op.create_index("ix_line_not_carried", ["not_carried", "ended_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("invoice_line", schema=None) as batch_op:
        batch_op.drop_index("ix_line_not_carried")
        batch_op.drop_column("not_carried")

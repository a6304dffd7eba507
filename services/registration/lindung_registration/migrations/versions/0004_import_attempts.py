"""import attempts: an import whose process keeps dying is given up after a few claims

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 10:00:00.000000

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0004'
down_revision: Union[str, Sequence[str], None] = '0003'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    # Imports queued or running before the upgrade start with no attempt counted.
    with op.batch_alter_table('import_job', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('attempts', sa.Integer(), nullable=False, server_default=sa.text('0'))
        )


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('import_job', schema=None) as batch_op:
        batch_op.drop_column('attempts')

"""add items.created_at: broken on purpose (the backfill divides by zero)

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "items",
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
    )
    op.execute("UPDATE items SET created_at = now() + (1 / 0) * interval '1 day'")


def downgrade() -> None:
    op.drop_column("items", "created_at")

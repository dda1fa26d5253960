"""backfill items.slug (data migration), then make it required

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("UPDATE items SET slug = lower(replace(name, ' ', '-')) WHERE slug IS NULL")
    op.alter_column("items", "slug", nullable=False)


def downgrade() -> None:
    op.alter_column("items", "slug", nullable=True)
    op.execute("UPDATE items SET slug = NULL")

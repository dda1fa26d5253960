"""index items.slug

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_items_slug", "items", ["slug"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_items_slug", table_name="items")

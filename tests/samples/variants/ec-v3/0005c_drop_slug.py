"""contract: drop items.slug, which image ec-v3's code no longer reads

Revision ID: 0005c
Revises: 0004c
Depends on: 0005

The contract branch goes on from 0004c; ``depends_on`` keeps it after this image's expand
revision when someone runs ``alembic upgrade heads`` by hand. ec-v2's pods read ``slug``
until the rollout of ec-v3 has finished, so this waits for ``--phase contract``.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005c"
down_revision = "0004c"
branch_labels = None
depends_on = "0005"


def upgrade() -> None:
    op.drop_column("items", "slug")


def downgrade() -> None:
    op.add_column("items", sa.Column("slug", sa.String(100), nullable=True))
    op.execute("UPDATE items SET slug = lower(replace(title, ' ', '-'))")
    op.alter_column("items", "slug", nullable=False)

"""contract that fails: division by zero (replaces ec-v2's 0004c)

Revision ID: 0004c
Revises:
Depends on: 0004

Image ec-v2-contract-broken: ec-v2's expand half as it is, and a contract revision that
raises, so the cluster tests can show a failed contract phase (Stalled, new pods serving).
"""

from alembic import op

revision = "0004c"
down_revision = None
branch_labels = ("contract",)
depends_on = "0004"


def upgrade() -> None:
    op.execute("SELECT 1 / 0")


def downgrade() -> None:
    pass

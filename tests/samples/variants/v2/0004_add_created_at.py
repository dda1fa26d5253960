"""add items.created_at; waits on an advisory lock a test may hold (to make it slow)

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# Keep in sync with samples.SLOW_LOCK_KEY: a test holding this advisory lock
# keeps this revision (and so the whole migration) waiting until it lets go.
SLOW_LOCK_KEY = 7400001


def upgrade() -> None:
    # The runner's lock_timeout (a few seconds) would end this deliberate wait with 55P03,
    # so it is off for the wait only; the ALTER below runs under it again.
    op.execute(
        sa.text("SELECT set_config('samples.lock_timeout', current_setting('lock_timeout'), true)")
    )
    op.execute(sa.text("SET LOCAL lock_timeout = 0"))
    op.execute(sa.text(f"SELECT pg_advisory_xact_lock({SLOW_LOCK_KEY})"))
    op.execute(
        sa.text("SELECT set_config('lock_timeout', current_setting('samples.lock_timeout'), true)")
    )
    op.add_column(
        "items",
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
    )


def downgrade() -> None:
    op.drop_column("items", "created_at")

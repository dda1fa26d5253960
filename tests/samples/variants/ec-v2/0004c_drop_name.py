"""contract: drop items.name (renamed to items.title by 0004) and its sync trigger

Revision ID: 0004c
Revises:
Depends on: 0004

The first revision of the ``contract`` branch: its own base (down_revision None) with the
branch label, so the expand line keeps a single head. ``depends_on`` makes it follow the
expand revision it needs, so ``alembic upgrade heads`` by hand runs 0004 first. migrategate
runs it only with ``--phase contract``: after the rollout, once no ec-v1 pod reads ``name``.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004c"
down_revision = None
branch_labels = ("contract",)
depends_on = "0004"

# 0004's trigger function, for downgrade (revision files cannot import each other).
SYNC = """
CREATE FUNCTION items_sync_name_title() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        NEW.title := COALESCE(NEW.title, NEW.name);
        NEW.name := COALESCE(NEW.name, NEW.title);
    ELSIF NEW.name IS DISTINCT FROM OLD.name AND NEW.title IS NOT DISTINCT FROM OLD.title THEN
        NEW.title := NEW.name;
    ELSIF NEW.title IS DISTINCT FROM OLD.title AND NEW.name IS NOT DISTINCT FROM OLD.name THEN
        NEW.name := NEW.title;
    END IF;
    RETURN NEW;
END $$
"""


def upgrade() -> None:
    op.execute("DROP TRIGGER items_sync_name_title ON items")
    op.execute("DROP FUNCTION items_sync_name_title()")
    op.drop_column("items", "name")
    op.alter_column("items", "title", nullable=False)


def downgrade() -> None:
    # Back to 0004's state: name filled from title again, and 0004's trigger in place.
    op.alter_column("items", "title", nullable=True)
    op.add_column("items", sa.Column("name", sa.String(100), nullable=True))
    op.execute("UPDATE items SET name = title")
    op.alter_column("items", "name", nullable=False)
    op.execute(SYNC)
    op.execute(
        "CREATE TRIGGER items_sync_name_title BEFORE INSERT OR UPDATE ON items"
        " FOR EACH ROW EXECUTE FUNCTION items_sync_name_title()"
    )

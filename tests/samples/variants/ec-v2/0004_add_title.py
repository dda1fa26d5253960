"""expand: add items.title (the new name of items.name), backfill it, keep both in step

Revision ID: 0004
Revises: 0003

Image ec-v2's code reads and writes ``title``; ec-v1's pods, still serving during the
rollout, read and write ``name``. Until the contract phase drops ``name``, a trigger
copies whichever column a writer set into the other, so both images see every row.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

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
    op.add_column("items", sa.Column("title", sa.String(100), nullable=True))
    op.execute(SYNC)
    op.execute(
        "CREATE TRIGGER items_sync_name_title BEFORE INSERT OR UPDATE ON items"
        " FOR EACH ROW EXECUTE FUNCTION items_sync_name_title()"
    )
    op.execute("UPDATE items SET title = name WHERE title IS NULL")


def downgrade() -> None:
    op.execute("DROP TRIGGER items_sync_name_title ON items")
    op.execute("DROP FUNCTION items_sync_name_title()")
    op.drop_column("items", "title")

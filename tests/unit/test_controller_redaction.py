"""No password reaches status or Events."""

from migrategate.controller.redaction import clean, redact


def test_url_passwords_are_redacted_even_with_odd_characters():
    text = "cannot connect to postgresql+asyncpg://app:s3cr%40t:x@db.example:5432/shop: refused"
    out = redact(text)
    assert "s3cr" not in out
    assert "postgresql+asyncpg://app:***@db.example:5432/shop" in out


def test_key_value_passwords_are_redacted():
    out = redact("dsn host=db user=app password='hunter 2' dbname=x; PASSWORD=abc&x=1")
    assert "hunter" not in out and "abc" not in out
    assert "user=app" in out and "dbname=x" in out


def test_text_without_secrets_is_unchanged():
    assert redact("relation users already exists") == "relation users already exists"


def test_clean_collapses_whitespace_and_truncates():
    out = clean("line one\n\n   line two " + "x" * 100, limit=30)
    assert out.startswith("line one line two")
    assert len(out) == 30 and out.endswith("...")
    assert clean(None) == ""

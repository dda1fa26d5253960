"""The masker: every spelling of the URL's password, built once from the URL string."""

from __future__ import annotations

from migrategate.runner.masking import Masker
from sqlalchemy.engine import URL


def test_mask_hides_raw_and_encoded_spellings() -> None:
    masker = Masker.for_url("postgresql+asyncpg://app:a%2Fb%20c@db/shop")
    masked = masker("failed for a/b c and a%2Fb%20c and a%2Fb+c")
    assert "a/b c" not in masked and "a%2Fb%20c" not in masked and "a%2Fb+c" not in masked


def test_mask_hides_sqlalchemys_own_rendering() -> None:
    password = "p@ss:w/rd%?#& x-9Q+é"
    url = URL.create("postgresql+asyncpg", username="app", password=password, host="db")
    rendered = url.render_as_string(hide_password=False)
    masked = Masker.for_url(rendered)(f"engine for {rendered} failed")
    assert masked == "engine for postgresql+asyncpg://app:***@db failed"


def test_unparseable_urls_are_masked_as_written() -> None:
    raw = "postgresql+asyncpg://app:p%40ss word@db:bad/shop"
    masked = Masker.for_url(raw)(f"saw {raw}")
    assert "p%40ss word" not in masked and "p@ss word" not in masked


def test_no_url_masks_nothing() -> None:
    assert Masker.for_url("")("app:pw@db") == "app:pw@db"
    assert Masker()("app:pw@db") == "app:pw@db"


def test_mask_keeps_messages_readable_for_very_short_passwords() -> None:
    message = "DATABASE_URL names the 'mysql' backend; use postgresql+asyncpg://"
    masker = Masker.for_url("postgresql+asyncpg://app:p@db/shop")
    assert masker(message) == message
    assert masker("connect as app:p@db with password p") == (
        "connect as app:***@db with password ***"
    )

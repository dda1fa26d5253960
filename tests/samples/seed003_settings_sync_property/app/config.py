"""Settings: one async URL; the sync URL for Alembic is derived as seed 003 does."""

from pydantic_settings import BaseSettings


class Settings(BaseSettings):
    database_url: str

    @property
    def database_url_sync(self) -> str:
        """Synchronous URL for Alembic (psycopg2 friendly)."""
        # Strip +asyncpg +psycopg2 so plain libpq URL remains.
        return self.database_url.replace("+asyncpg", "")


settings = Settings()

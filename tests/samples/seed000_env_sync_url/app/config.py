"""Settings as seed 000 defines them: the async URL and the sync URL for Alembic."""

from pydantic_settings import BaseSettings


class Settings(BaseSettings):
    database_url: str  # async
    database_url_sync: str  # sync, for Alembic only


settings = Settings()

"""Settings: the app's async database URL."""

from pydantic_settings import BaseSettings


class Settings(BaseSettings):
    DATABASE_URL: str


settings = Settings()

# alembic/env.py
from logging.config import fileConfig
from sqlalchemy import engine_from_config, pool
from alembic import context
# Import the Settings singleton — works because env vars are loaded once.
from app.config import settings
from app.database import Base # metadata holder for autogenerate
config = context.config
if config.config_file_name is not None:
    fileConfig(config.config_file_name)
# CRITICAL: feed Alembic's [sqlalchemy.url] from Pydantic Settings.
# Do NOT hardcode in alembic.ini — env vars own the source of truth.
config.set_main_option("sqlalchemy.url", settings.database_url_sync)
target_metadata = Base.metadata


# alembic/env.py — run_migrations_offline
def run_migrations_offline() -> None:
    url = config.get_main_option("sqlalchemy.url")
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


# alembic/env.py — run_migrations_online
def run_migrations_online() -> None:
    connectable = engine_from_config(
        config.get_section(config.config_ini_section, {}),
        prefix="sqlalchemy.",
        poolclass=pool.NullPool, # one-shot connection
    )
    with connectable.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            compare_type=True, # detect column-type changes
        )
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()

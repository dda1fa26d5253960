# alembic/env.py
import asyncio
import sys
import os
from sqlalchemy import pool  # added: the seed uses pool.NullPool without importing it (NameError)
from sqlalchemy.ext.asyncio import async_engine_from_config
from alembic import context

sys.path.insert(0, os.getcwd())

from app.core.config import settings
from app.models.base import Base

config = context.config
if config.config_file_name:
    from logging.config import fileConfig
    fileConfig(config.config_file_name)

config.set_main_option("sqlalchemy.url", str(settings.DATABASE_URL))
target_metadata = Base.metadata

# Import ALL models here for autogenerate!
# from app.models import user, item

def do_run_migrations(connection):
    context.configure(connection=connection, target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()

async def run_migrations_online():
    connectable = async_engine_from_config(
        config.get_section(config.config_ini_section),
        prefix="sqlalchemy.",
        poolclass=pool.NullPool,
    )
    async with connectable.connect() as connection:
        await connection.run_sync(do_run_migrations)
    await connectable.dispose()

if context.is_offline_mode():
    # Offline logic here
    pass
else:
    asyncio.run(run_migrations_online())

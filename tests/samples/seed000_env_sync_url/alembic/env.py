import os
from logging.config import fileConfig
from alembic import context
from sqlalchemy import create_engine

from app.database import Base
from app.models import *  # noqa — import all models for autogenerate

config = context.config
if config.config_file_name is not None:
    fileConfig(config.config_file_name)

target_metadata = Base.metadata

# Always prefer env var over alembic.ini
db_url = os.getenv("DATABASE_URL_SYNC", config.get_main_option("sqlalchemy.url"))

def run_migrations_offline():
    context.configure(url=db_url, target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()

def run_migrations_online():
    connectable = create_engine(db_url)
    with connectable.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()

if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()

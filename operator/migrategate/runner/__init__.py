"""The in-pod migration runner. Imports only the stdlib, SQLAlchemy and Alembic (Python >= 3.9)."""

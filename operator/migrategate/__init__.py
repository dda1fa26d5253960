"""migrategate: run Alembic migrations on Kubernetes, exactly once, before new pods start."""

__version__ = "0.1.0"

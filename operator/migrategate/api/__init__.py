"""Pydantic models of the DatabaseMigration spec and status; the CRD is generated from them."""

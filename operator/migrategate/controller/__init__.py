"""The kopf operator: thin handlers over plain functions (Job builder, status, gate)."""

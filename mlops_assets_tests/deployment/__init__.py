"""Dagster-level tests of model training and deployment: champion selection, its checks and
history, the registry aliases, rollback, dry runs and the predictions each champion makes."""

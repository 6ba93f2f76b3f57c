"""Airflow adapters for podledger: the Prometheus hook, the S3Hook-backed store, and the DAG factory."""

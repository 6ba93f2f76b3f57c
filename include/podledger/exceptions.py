"""The podledger error hierarchy: every error names the resource it is about and the fix."""

from __future__ import annotations


class PodledgerError(Exception):
    """Base class of every podledger error."""


class ConfigError(PodledgerError):
    """A cost-center configuration is invalid (message names the file, field and reason)."""


class ConnectionConfigError(PodledgerError):
    """A connection (Prometheus, AWS, warehouse) is missing or malformed."""


class PrometheusQueryError(PodledgerError):
    """A PromQL query failed for good (message names cluster, window and metric, never secrets)."""


class QueryTooLarge(PrometheusQueryError):
    """The backend refused a query for its size (samples, series, chunks, time): split it and ask again."""


class ExportIncompleteError(PodledgerError):
    """A window could not be exported completely; no manifest was written."""


class ValidationFailed(PodledgerError):
    """Exported data or billing data failed a data-quality rule that is an error."""


class BillingDataError(PodledgerError):
    """Billing data (CUR 2.0 / FOCUS) is missing or malformed."""


class ReconciliationError(PodledgerError):
    """Allocated rows do not add up to the billed cost of a cluster-hour."""


class NothingToDo(PodledgerError):
    """A run has nothing to do (its range is empty or after the cost center's end_date): skip it, naming why."""

"""podledger: what every Kubernetes namespace, workload and pod really costs, from Prometheus and the bill."""

from __future__ import annotations

__version__ = "0.2.0"

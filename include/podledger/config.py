"""Cost-center configuration: one YAML file, validated into typed models once."""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from podledger.config_checks import (
    CONN_ID,
    IDENTIFIER_RE,
    NAME_RE,
    check_cron,
    check_object_uri,
    sql_reserved_words,
)
from podledger.exceptions import ConfigError
from podledger.storage import Location, split_uri

CONFIG_ENV_VAR = "PODLEDGER_CONFIG"
SAMPLE_CONFIG = Path(__file__).resolve().parents[1] / "cost_centers.yaml"

class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ClusterConfig(_Model):
    """One Kubernetes cluster read from one Prometheus-compatible endpoint."""

    name: str
    prometheus_conn_id: str = Field("prometheus_default", pattern=CONN_ID)
    # Centralized mode: the value of the cluster label selecting this cluster's series.
    cluster_label_value: str | None = Field(None, max_length=1000)
    scrape_interval_seconds: int = Field(60, gt=0, le=3600)
    # An Airflow pool shared by every cluster read from the same endpoint: its slots bound the window exports
    # running at once against that Prometheus (each runs up to queries_batch_size queries). None: default_pool.
    pool: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]+$")
    # The cluster's cloud identity, (account, region, name): a payer account's bill holds every linked account,
    # where the same cluster name can exist twice. Unset: derived from the bill rows of the cluster's own nodes.
    account_id: str | None = Field(None, pattern=r"^[0-9]{12}$")
    region: str | None = Field(None, pattern=r"^[a-z]{2}(-[a-z]+)+-[0-9]+$")

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        if not isinstance(value, str) or not NAME_RE.match(value) or ".." in value:
            raise ValueError(
                f"cluster name {value!r} must match {NAME_RE.pattern} (it becomes an S3 folder and an Airflow id)"
            )
        return value


class DiscoveryConfig(_Model):
    """Centralized mode: one endpoint (Mimir, Thanos, VictoriaMetrics, AMP…) holding many clusters.

    Clusters are the values of the cost center's ``cluster_label`` on kube_node_info, filtered by
    ``allow``/``deny`` shell patterns (deny wins); each is exported to its own folder.
    """

    prometheus_conn_id: str = Field(pattern=CONN_ID)
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    pool: str | None = Field(None, pattern=CONN_ID)  # the endpoint's Airflow pool (see ClusterConfig)
    scrape_interval_seconds: int = Field(60, gt=0, le=3600)


class StorageConfig(_Model):
    """Where exported metrics live: s3://bucket/prefix (or file:///path for local runs)."""

    uri: str = "s3://podledger/k8s/prometheus"
    aws_conn_id: str = Field("aws_default", pattern=CONN_ID)
    format: Literal["parquet", "json.gz"] = "parquet"
    retention_days: int = Field(30, ge=1, le=36500)

    @field_validator("uri")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        return check_object_uri(value, "storage uri")

    @property
    def location(self) -> Location:
        """The uri as (scheme, bucket, prefix), parsed in one place."""
        return split_uri(self.uri)


class BillingConfig(_Model):
    """Where the AWS CUR 2.0 Data Exports delivery lives and how to price node-hours."""

    # cur2: AWS CUR 2.0 Data Exports; focus: FOCUS 1.0-1.2 exports of AWS, GCP or Azure (same folder layout).
    # cur_legacy: the legacy CUR delivered for Athena (<uri>/year=YYYY/month=M/*.parquet).
    format: Literal["cur2", "cur_legacy", "focus"] = "cur2"
    uri: str = "s3://podledger-billing/cur/podledger"
    aws_conn_id: str = Field("aws_default", pattern=CONN_ID)
    cost_basis: Literal["amortized", "net_amortized", "unblended", "public_on_demand"] = "amortized"
    # CUR 2.0 resource_tags keys whose value names the cluster an instance belongs to.
    cluster_tag_keys: tuple[str, ...] = ("aws_eks_cluster_name", "user_eks_cluster_name")
    # FOCUS Tags keys naming the cluster of a VM (EKS, GKE and AKS conventions).
    focus_cluster_tag_keys: tuple[str, ...] = ("aws:eks:cluster-name", "eks:cluster-name", "goog-k8s-cluster-name",
                                               "aks-managed-cluster-name")
    # How often to look for new or restated CUR deliveries, and for how long to wait for coverage.
    check_schedule: str = "0 */4 * * *"
    wait_timeout_seconds: int = Field(3 * 86400, ge=60, le=60 * 86400)
    poke_interval_seconds: int = Field(1800, ge=1, le=86400)

    @field_validator("uri")
    @classmethod
    def _object_uri(cls, value: str) -> str:
        return check_object_uri(value, "billing uri")

    @property
    def location(self) -> Location:
        """The uri as (scheme, bucket, prefix), parsed in one place."""
        return split_uri(self.uri)

    @field_validator("check_schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        return check_cron(value)


class AllocationConfig(_Model):
    """How a node-hour's cost is split (defaults follow AWS Split Cost Allocation Data)."""

    cpu_weight: float = Field(9.0, gt=0, le=1000)
    memory_weight: float = Field(1.0, gt=0, le=1000)
    gpu_weight: float = Field(9.0, gt=0, le=1000)
    # Accelerator resources (Kubernetes names): a node with any of them is priced with the accelerator weights,
    # and pods' requests of them (and DCGM usage) are their GPU-hours.
    accelerators: tuple[str, ...] = ("nvidia.com/gpu", "amd.com/gpu", "aws.amazon.com/neuron",
                                     "aws.amazon.com/neuroncore", "habana.ai/gaudi")
    idle: Literal["redistribute", "separate"] = "redistribute"
    # With idle: separate, keep one __idle__ row per node (default) or one per cluster-hour.
    idle_by: Literal["node", "cluster"] = "node"
    # Capacity basis: the whole instance (AWS SCAD) or kube allocatable (reserved resources become idle-free).
    capacity: Literal["instance", "allocatable"] = "instance"
    # EKS control plane: its own __cluster_overhead__ row, or shared onto pods in proportion to their cost.
    cluster_overhead: Literal["separate", "shared"] = "separate"


class WarehouseConfig(_Model):
    """The table the allocation rows are loaded into."""

    kind: Literal["duckdb", "postgres"] = "duckdb"
    path: str = Field("${PODLEDGER_HOME}/warehouse.duckdb", min_length=1, max_length=1024)  # DuckDB file
    # PostgreSQL: the Airflow connection (host, port, login, password, schema=db)
    conn_id: str = Field("warehouse_default", pattern=CONN_ID)
    table: str = "k8s_cost_allocation"

    @field_validator("table")
    @classmethod
    def _identifier(cls, value: str) -> str:
        # The name is written into SQL unquoted (and gets _split_line_items / _daily_* suffixes): a plain,
        # non-reserved identifier of at most 40 characters.
        if not isinstance(value, str) or not IDENTIFIER_RE.match(value) or len(value) > 40:
            raise ValueError(f"table {value!r} must be a plain SQL identifier (letters, digits, _; at most 40)")
        if value.lower() in sql_reserved_words():
            raise ValueError(f"table {value!r} is an SQL reserved word; choose another name (e.g. {value}_costs)")
        return value

    def resolved_path(self) -> Path:
        """Return the DuckDB path with ${VARS} expanded ($PODLEDGER_HOME defaults to ./.podledger)."""
        home = os.environ.get("PODLEDGER_HOME") or str(Path.cwd() / ".podledger")
        return Path(os.path.expandvars(self.path.replace("${PODLEDGER_HOME}", home))).expanduser()


class MetricsConfig(_Model):
    """Which catalog metrics to export: every one by default; optional ones can be switched off."""

    disable: tuple[str, ...] = ()
    # Raw mode: metric name -> step seconds; the metric's underlying series are also written as
    # metric=<name>_raw (one row per series and timestamp).
    raw: dict[str, int] = Field(default_factory=dict)

    @field_validator("raw")
    @classmethod
    def _known_raw(cls, value: dict[str, int]) -> dict[str, int]:
        from podledger.catalog import CATALOG_BY_NAME

        for name, step in value.items():
            if name not in CATALOG_BY_NAME:
                raise ValueError(f"unknown metric {name!r} in raw; known: {sorted(CATALOG_BY_NAME)}")
            if not 1 <= step <= 3600:
                raise ValueError(f"raw step for {name!r} must be between 1 and 3600 seconds")
        return value

    @field_validator("disable")
    @classmethod
    def _known_optional(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        from podledger.catalog import CATALOG_BY_NAME

        for name in value:
            spec = CATALOG_BY_NAME.get(name)
            if spec is None:
                raise ValueError(f"unknown metric {name!r}; known: {sorted(CATALOG_BY_NAME)}")
            if spec.required:
                raise ValueError(f"metric {name!r} is required for allocation and cannot be disabled")
        return value


class CostCenterConfig(_Model):
    """A cost center: its clusters, schedule, storage, billing source and warehouse."""

    name: str
    owner: str = Field("platform", min_length=1, max_length=100, pattern=r"^[^\x00-\x1f]*$")
    schedule: str = "*/30 * * * *"
    time_frame_seconds: int = Field(3600, ge=60, le=3600)
    initial_backfill_date: dt.date | None = None
    backfill_days: int = Field(3, ge=0, le=3650)
    catchup: bool = True  # schedule every missed interval since the start date (False: only the latest)
    end_date: dt.date | None = None  # no scheduled runs after this day (a retired cluster set, a fixed history)
    queries_batch_size: int = Field(5, ge=1, le=50)
    # CLUSTER_LABEL_NAME: in centralized mode (clusters with cluster_label_value), the label naming the cluster.
    cluster_label: str = Field("cluster", pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$")
    query_timeout_seconds: float = Field(120.0, gt=0, le=3600)
    query_retries: int = Field(4, ge=0, le=10)
    query_delay_seconds: float = Field(0.0, ge=0, le=60)  # pause after each query: gentler on a busy Prometheus
    metrics: MetricsConfig = MetricsConfig()
    retries: int = Field(3, ge=0, le=20)
    retry_delay_seconds: int = Field(60, ge=1, le=86400)
    clusters: tuple[ClusterConfig, ...] = ()
    discovery: DiscoveryConfig | None = None
    storage: StorageConfig = StorageConfig()
    billing: BillingConfig = BillingConfig()
    allocation: AllocationConfig = AllocationConfig()
    warehouse: WarehouseConfig = WarehouseConfig()

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        if not isinstance(value, str) or not NAME_RE.match(value):
            raise ValueError(f"cost center name {value!r} must be 1-63 letters, digits, '_', '.' or '-', starting "
                             "with a letter or digit (it becomes part of DAG ids and Asset names)")
        return value

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        return check_cron(value)

    @field_validator("backfill_days", mode="before")
    @classmethod
    def _days(cls, value: object) -> object:
        # BACKFILL_DAYS in the seed's syntax: "3d" (days); a plain number is days too.
        if isinstance(value, str) and re.fullmatch(r"\s*\d+\s*d?\s*", value):
            return int(value.strip().rstrip("d"))
        return value

    @field_validator("time_frame_seconds")
    @classmethod
    def _divides_hour(cls, value: int) -> int:
        # Allocation is per hour: every window must lie inside one hour.
        if 3600 % value:
            raise ValueError(f"time_frame_seconds={value} must divide an hour (3600): 60, 300, 600, 900, 1200, 1800 "
                             "or 3600")
        return value

    @model_validator(mode="after")
    def _dates_in_order(self) -> CostCenterConfig:
        if self.end_date and self.initial_backfill_date and self.end_date <= self.initial_backfill_date:
            raise ValueError(f"end_date {self.end_date} must be after initial_backfill_date "
                             f"{self.initial_backfill_date} (end_date is exclusive)")
        return self

    @model_validator(mode="after")
    def _clusters_or_discovery(self) -> CostCenterConfig:
        if not self.clusters and self.discovery is None:
            raise ValueError("list at least 1 cluster in 'clusters' or configure 'discovery' (centralized mode)")
        return self

    @model_validator(mode="after")
    def _unique_clusters(self) -> CostCenterConfig:
        names = [c.name for c in self.clusters]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"cluster names must be unique within a cost center, repeated: {dupes}")
        return self

    def cluster(self, name: str) -> ClusterConfig:
        """Return the cluster called ``name`` or raise a ConfigError naming the choices."""
        for cluster in self.clusters:
            if cluster.name == name:
                return cluster
        if self.discovery is not None:
            # A discovered cluster: its folder name is all enrichment needs.
            return ClusterConfig(name=name, prometheus_conn_id=self.discovery.prometheus_conn_id,
                                 scrape_interval_seconds=self.discovery.scrape_interval_seconds)
        raise ConfigError(f"cost center {self.name!r} has no cluster {name!r}; known: {[c.name for c in self.clusters]}")


class ConfigLoad(_Model):
    """The result of reading a config file: valid cost centers and per-cost-center errors."""

    path: str
    cost_centers: tuple[CostCenterConfig, ...]
    errors: tuple[tuple[str, str], ...] = ()  # (cost center name or index, message)


def _format_error(path: str, label: str, exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "(root)"
        parts.append(f"{path}: cost center {label}: field '{field}': {err['msg']}")
    return "; ".join(parts)


def config_path() -> str:
    """Return the config file path: $PODLEDGER_CONFIG or the sample shipped under include/."""
    return os.environ.get(CONFIG_ENV_VAR) or str(SAMPLE_CONFIG)


def _storage_folders(cost_center: CostCenterConfig) -> tuple[str, set[str] | None]:
    """(bucket/prefix, cluster folders or None when discovery may write any folder under the prefix)."""

    scheme, bucket, prefix = cost_center.storage.location
    folders = None if cost_center.discovery is not None else {c.name for c in cost_center.clusters}
    return f"{scheme}://{bucket}/{prefix}".rstrip("/"), folders


def _storage_clash(cost_center: CostCenterConfig, others: list[CostCenterConfig]) -> str | None:
    """Name another cost center writing a cluster folder this one writes (same bucket, prefix and cluster)."""
    where, mine = _storage_folders(cost_center)
    for other in others:
        other_where, theirs = _storage_folders(other)
        if where != other_where:
            continue
        shared = (mine & theirs) if mine is not None and theirs is not None else (mine or theirs or {"*"})
        if shared:
            return (f"cost centers {other.name!r} and {cost_center.name!r} both write cluster folder(s) "
                    f"{sorted(shared)} under {where}: their windows and retention would overwrite each other; "
                    "give each cost center its own storage.uri prefix")
    return None


def load_config(path: str | os.PathLike[str] | None = None) -> ConfigLoad:
    """Read and validate every cost center of a YAML file; one bad cost center does not hide the others."""
    path = str(path or config_path())
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: config file not found; set {CONFIG_ENV_VAR} or create it") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("cost_centers"), list):
        raise ConfigError(f"{path}: field 'cost_centers': must be a list of cost centers")
    valid: list[CostCenterConfig] = []
    errors: list[tuple[str, str]] = []
    seen: set[str] = set()
    for index, item in enumerate(raw["cost_centers"]):
        label = f"#{index}"
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            label = f"#{index} ({item['name']})"
        try:
            cost_center = CostCenterConfig.model_validate(item)
        except ValidationError as exc:
            errors.append((label, _format_error(path, label, exc)))
            continue
        except Exception as exc:  # noqa: BLE001 - a validator's own failure must not hide the other cost centers
            errors.append((label, f"{path}: cost center {label}: cannot be validated: {type(exc).__name__}: {exc}"))
            continue
        if cost_center.name in seen:
            errors.append((label, f"{path}: cost center {label}: field 'name': duplicate cost center name"))
            continue
        clash = _storage_clash(cost_center, valid)
        if clash:
            errors.append((label, f"{path}: cost center {label}: field 'storage.uri': {clash}"))
            continue
        seen.add(cost_center.name)
        valid.append(cost_center)
    return ConfigLoad(path=path, cost_centers=tuple(valid), errors=tuple(errors))


def load_cost_center(name: str, path: str | os.PathLike[str] | None = None) -> CostCenterConfig:
    """Return one valid cost center or raise a ConfigError with the file, field and reason."""
    loaded = load_config(path)
    for cost_center in loaded.cost_centers:
        if cost_center.name == name:
            return cost_center
    for label, message in loaded.errors:
        if name in label:
            raise ConfigError(message)
    known = [c.name for c in loaded.cost_centers]
    raise ConfigError(f"{loaded.path}: no cost center named {name!r}; known: {known}")

-- podledger views over k8s_cost_allocation (DuckDB and PostgreSQL). {table} is replaced by the loader.
-- Sentinel owners (__idle__, __unallocated__, __unpriced__, __cluster_overhead__) keep every cent visible.

CREATE OR REPLACE VIEW {table}_daily_namespace AS
SELECT date_trunc('day', hour_start) AS day, cost_center, cluster, namespace,
       sum(total_cost) AS total_cost, sum(cpu_cost) AS cpu_cost, sum(memory_cost) AS memory_cost,
       sum(gpu_cost) AS gpu_cost, sum(unused_cost) AS unused_cost, sum(network_cost) AS network_cost,
       max(currency) AS currency
FROM {table}
GROUP BY 1, 2, 3, 4;

CREATE OR REPLACE VIEW {table}_daily_workload AS
SELECT date_trunc('day', hour_start) AS day, cost_center, cluster, namespace, controller_kind, controller_name,
       count(DISTINCT pod) AS pods, sum(total_cost) AS total_cost,
       sum(cpu_request_core_hours) AS cpu_request_core_hours, sum(cpu_usage_core_hours) AS cpu_usage_core_hours,
       sum(memory_request_gib_hours) AS memory_request_gib_hours, sum(memory_usage_gib_hours) AS memory_usage_gib_hours
FROM {table}
WHERE namespace NOT LIKE '\_\_%' ESCAPE '\'
GROUP BY 1, 2, 3, 4, 5, 6;

CREATE OR REPLACE VIEW {table}_daily_idle AS
SELECT date_trunc('day', hour_start) AS day, cost_center, cluster,
       sum(CASE WHEN namespace = '__idle__' THEN total_cost ELSE 0 END) AS idle_cost,
       sum(unused_cost) AS unused_cost,
       sum(CASE WHEN namespace = '__unallocated__' THEN total_cost ELSE 0 END) AS unallocated_cost,
       sum(CASE WHEN namespace = '__cluster_overhead__' THEN total_cost ELSE 0 END) AS overhead_cost,
       sum(total_cost) AS total_cost
FROM {table}
GROUP BY 1, 2, 3;

-- Kubecost's cost-weighted efficiency: sum(efficiency x (cpu+memory cost)) / sum(cpu+memory cost).
CREATE OR REPLACE VIEW {table}_daily_efficiency AS
SELECT date_trunc('day', hour_start) AS day, cost_center, cluster, namespace,
       sum(efficiency * (cpu_cost + memory_cost)) / nullif(sum(cpu_cost + memory_cost), 0) AS efficiency,
       sum(cpu_usage_core_hours) / nullif(sum(cpu_request_core_hours), 0) AS cpu_usage_over_request,
       sum(memory_usage_gib_hours) / nullif(sum(memory_request_gib_hours), 0) AS memory_usage_over_request
FROM {table}
WHERE namespace NOT LIKE '\_\_%' ESCAPE '\'
GROUP BY 1, 2, 3, 4;

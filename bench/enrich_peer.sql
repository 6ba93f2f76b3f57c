-- bench/enrich.py's peer: podledger's split rule for one day, as a data engineer would write it in DuckDB SQL.
-- {{name}} placeholders are the day's metric files and the CUR files (filled by bench/enrich.py); $start/$end bind.
WITH
running AS (
    SELECT window_start AS hour, namespace, pod, uid, sum(running_seconds) AS running_s,
           sum(present_seconds) AS present_s
    FROM read_parquet({pod_running}) GROUP BY ALL),
sidecars AS (
    SELECT DISTINCT window_start AS hour, namespace, pod, uid, container
    FROM read_parquet({init_container_info}) WHERE restart_policy = 'Always'),
requests AS (
    SELECT window_start AS hour, namespace, pod, uid, container, 'cpu' AS resource, false AS init,
           sum(request_core_seconds) AS s FROM read_parquet({cpu_requests}) GROUP BY ALL
    UNION ALL
    SELECT window_start, namespace, pod, uid, container, 'memory', false, sum(request_byte_seconds)
    FROM read_parquet({memory_requests}) GROUP BY ALL
    UNION ALL
    SELECT window_start, namespace, pod, uid, container, 'gpu', false, sum(request_gpu_seconds)
    FROM read_parquet({gpu_requests}) WHERE resource = 'nvidia_com_gpu' GROUP BY ALL
    UNION ALL
    SELECT window_start, namespace, pod, uid, container, 'cpu', true, sum(request_core_seconds)
    FROM read_parquet({init_cpu_requests}) GROUP BY ALL
    UNION ALL
    SELECT window_start, namespace, pod, uid, container, 'memory', true, sum(request_byte_seconds)
    FROM read_parquet({init_memory_requests}) GROUP BY ALL),
typed AS (  -- the average request over the seconds the pod existed; app, sidecar or init container
    SELECT q.hour, q.namespace, q.pod, q.uid, q.resource, q.s / coalesce(r.present_s, 3600) AS request,
           CASE WHEN NOT q.init THEN 'app' WHEN c.container IS NOT NULL THEN 'sidecar' ELSE 'init' END AS kind
    FROM requests q LEFT JOIN running r USING (hour, namespace, pod, uid)
    LEFT JOIN sidecars c USING (hour, namespace, pod, uid, container)),
effective AS (  -- Kubernetes' effective request: max(apps + sidecars, max(init) + sidecars)
    SELECT hour, namespace, pod, uid, resource,
           greatest(coalesce(sum(request) FILTER (WHERE kind = 'app'), 0), coalesce(max(request) FILTER (WHERE kind = 'init'), 0))
           + coalesce(sum(request) FILTER (WHERE kind = 'sidecar'), 0) AS eff
    FROM typed GROUP BY ALL),
eff AS (
    SELECT hour, namespace, pod, uid, coalesce(max(eff) FILTER (WHERE resource = 'cpu'), 0) AS cpu_req,
           coalesce(max(eff) FILTER (WHERE resource = 'memory'), 0) AS mem_req,
           coalesce(max(eff) FILTER (WHERE resource = 'gpu'), 0) AS gpu_req
    FROM effective GROUP BY ALL),
cpu_used AS (SELECT window_start AS hour, namespace, pod, uid, sum(usage_core_seconds) / 3600 AS cpu_used
             FROM read_parquet({cpu_usage}) GROUP BY ALL),
mem_used AS (SELECT window_start AS hour, namespace, pod, uid, sum(usage_byte_seconds) / 3600 / 1073741824 AS mem_used
             FROM read_parquet({memory_usage}) GROUP BY ALL),
tx AS (SELECT window_start AS hour, namespace, pod, uid, sum(bytes) AS tx FROM read_parquet({network_transmit}) GROUP BY ALL),
rx AS (SELECT window_start AS hour, namespace, pod, uid, sum(bytes) AS rx FROM read_parquet({network_receive}) GROUP BY ALL),
info AS (SELECT window_start AS hour, namespace, pod, uid, arg_max(node, present_seconds) AS node
         FROM read_parquet({pod_info}) WHERE node <> '' GROUP BY ALL),
owner AS (
    SELECT o.window_start AS hour, o.namespace, o.pod, o.uid,
           CASE WHEN o.owner_kind = 'ReplicaSet' AND rs.owner_name IS NOT NULL THEN rs.owner_kind ELSE o.owner_kind END
               AS controller_kind,
           CASE WHEN o.owner_kind = 'ReplicaSet' AND rs.owner_name IS NOT NULL THEN rs.owner_name ELSE o.owner_name END
               AS controller_name
    FROM read_parquet({pod_owner}) o LEFT JOIN read_parquet({replicaset_owner}) rs
        ON rs.window_start = o.window_start AND rs.namespace = o.namespace AND rs.replicaset = o.owner_name),
pod_labels AS (SELECT window_start AS hour, namespace, pod, uid, {labels_json} AS pod_labels
               FROM read_parquet({pod_labels})),
ns_labels AS (SELECT window_start AS hour, namespace, {labels_json} AS namespace_labels
              FROM read_parquet({namespace_labels})),
node_labels AS (SELECT window_start AS hour, node, {labels_json} AS node_labels FROM read_parquet({node_labels})),
pods AS (
    SELECT r.hour, i.node, r.namespace, r.pod, r.uid, coalesce(o.controller_kind, 'Pod') AS controller_kind,
           coalesce(o.controller_name, r.pod) AS controller_name, l.pod_labels, nl.namespace_labels, dl.node_labels,
           r.running_s / 3600 AS running_hours, e.cpu_req * r.running_s / 3600 AS cpu_request_core_hours,
           e.mem_req / 1073741824 * r.running_s / 3600 AS memory_request_gib_hours,
           e.gpu_req * r.running_s / 3600 AS gpu_request_hours, cu.cpu_used AS cpu_usage_core_hours,
           mu.mem_used AS memory_usage_gib_hours, tx.tx AS network_transmit_bytes, rx.rx AS network_receive_bytes
    FROM running r
    LEFT JOIN eff e USING (hour, namespace, pod, uid) LEFT JOIN info i USING (hour, namespace, pod, uid)
    LEFT JOIN cpu_used cu USING (hour, namespace, pod, uid) LEFT JOIN mem_used mu USING (hour, namespace, pod, uid)
    LEFT JOIN tx USING (hour, namespace, pod, uid) LEFT JOIN rx USING (hour, namespace, pod, uid)
    LEFT JOIN owner o USING (hour, namespace, pod, uid) LEFT JOIN pod_labels l USING (hour, namespace, pod, uid)
    LEFT JOIN ns_labels nl USING (hour, namespace) LEFT JOIN node_labels dl ON dl.hour = r.hour AND dl.node = i.node
    WHERE r.running_s > 0),
alloc AS (
    SELECT *, greatest(cpu_request_core_hours, coalesce(cpu_usage_core_hours, 0)) AS cpu_alloc,
           greatest(memory_request_gib_hours, coalesce(memory_usage_gib_hours, 0)) AS mem_alloc,
           gpu_request_hours AS gpu_alloc
    FROM pods),
cap AS (
    SELECT window_start AS hour, node,
           sum(CASE WHEN resource = 'cpu' THEN unit_seconds END) / 3600 AS cpu_cap,
           sum(CASE WHEN resource = 'memory' THEN unit_seconds END) / 3600 / 1073741824 AS mem_cap,
           coalesce(sum(CASE WHEN resource = 'nvidia_com_gpu' THEN unit_seconds END), 0) / 3600 AS gpu_cap
    FROM read_parquet({node_capacity}) GROUP BY ALL),
node AS (
    SELECT n.window_start AS hour, n.node, regexp_extract(n.provider_id, 'i-[0-9a-f]+') AS instance_id, c.cost,
           c.net_cost, c.public_cost, c.account, c.region, c.currency
    FROM read_parquet({node_info}) n
    JOIN (SELECT line_item_usage_start_date AS hour, line_item_resource_id AS instance_id,
                 sum(line_item_unblended_cost) AS cost, sum(line_item_net_unblended_cost) AS net_cost,
                 sum(pricing_public_on_demand_cost) AS public_cost, any_value(line_item_usage_account_id) AS account,
                 any_value(product_region_code) AS region, any_value(line_item_currency_code) AS currency
          FROM read_parquet({cur}) WHERE line_item_usage_start_date >= $start AND line_item_usage_start_date < $end
          GROUP BY ALL) c ON c.hour = n.window_start AND c.instance_id = regexp_extract(n.provider_id, 'i-[0-9a-f]+')),
totals AS (SELECT hour, node, sum(cpu_alloc) AS cpu_total, sum(mem_alloc) AS mem_total, sum(gpu_alloc) AS gpu_total
           FROM alloc GROUP BY ALL),
priced AS (
    SELECT node.hour, node.node, node.instance_id, node.cost, node.net_cost, node.public_cost, node.account,
           node.region, node.currency, cap.cpu_cap, cap.mem_cap, cap.gpu_cap,
           coalesce(t.cpu_total, 0) AS cpu_total, coalesce(t.mem_total, 0) AS mem_total,
           coalesce(t.gpu_total, 0) AS gpu_total,
           CASE WHEN cap.gpu_cap > 0 THEN 0.9 ELSE 9 END AS w_cpu, CASE WHEN cap.gpu_cap > 0 THEN 0.1 ELSE 1 END AS w_mem,
           CASE WHEN cap.gpu_cap > 0 THEN 9 ELSE 0 END AS w_gpu
    FROM node JOIN cap USING (hour, node) LEFT JOIN totals t USING (hour, node)),
unit AS (SELECT *, cost / (w_cpu * cpu_cap + w_mem * mem_cap + w_gpu * gpu_cap) AS unit FROM priced),
ratios AS (
    SELECT p.*, u.instance_id, u.account, u.region, u.currency, u.cpu_cap, u.mem_cap, u.gpu_cap, u.w_cpu, u.w_mem,
           u.w_gpu, u.unit,
           CASE WHEN u.cost <> 0 THEN u.net_cost / u.cost END AS net_factor,
           CASE WHEN u.cost <> 0 THEN u.public_cost / u.cost END AS public_on_demand_factor,
           CASE WHEN greatest(cpu_cap, cpu_total) > 0 THEN p.cpu_alloc / greatest(cpu_cap, cpu_total) ELSE 0 END AS cpu_ratio,
           CASE WHEN greatest(mem_cap, mem_total) > 0 THEN p.mem_alloc / greatest(mem_cap, mem_total) ELSE 0 END AS mem_ratio,
           CASE WHEN greatest(gpu_cap, gpu_total) > 0 THEN p.gpu_alloc / greatest(gpu_cap, gpu_total) ELSE 0 END AS gpu_ratio,
           CASE WHEN cpu_total > 0 THEN p.cpu_alloc / cpu_total * greatest(cpu_cap - cpu_total, 0) * w_cpu * unit ELSE 0 END
               AS cpu_unused_cost,
           CASE WHEN mem_total > 0 THEN p.mem_alloc / mem_total * greatest(mem_cap - mem_total, 0) * w_mem * unit ELSE 0 END
               AS memory_unused_cost,
           CASE WHEN gpu_total > 0 THEN p.gpu_alloc / gpu_total * greatest(gpu_cap - gpu_total, 0) * w_gpu * unit ELSE 0 END
               AS gpu_unused_cost
    FROM alloc p JOIN unit u USING (hour, node)),
pod_rows AS (  -- the split line items (enrich_peer_split.sql) read the ratios, unused costs and factors
    SELECT * EXCLUDE (cpu_cap, mem_cap, gpu_cap, w_cpu, w_mem, w_gpu, unit),
           cpu_ratio * cpu_cap * w_cpu * unit AS cpu_cost, mem_ratio * mem_cap * w_mem * unit AS memory_cost,
           gpu_ratio * gpu_cap * w_gpu * unit AS gpu_cost,
           cpu_unused_cost + memory_unused_cost + gpu_unused_cost AS unused_cost
    FROM ratios),
idle AS (  -- the capacity of a resource nobody on the node allocated has no pod to land on
    SELECT hour, node, instance_id, CASE WHEN cpu_total = 0 THEN cpu_cap * w_cpu * unit ELSE 0 END
           + CASE WHEN mem_total = 0 THEN mem_cap * w_mem * unit ELSE 0 END
           + CASE WHEN gpu_total = 0 THEN gpu_cap * w_gpu * unit ELSE 0 END AS amount
    FROM unit)
SELECT *, cpu_cost + memory_cost + gpu_cost + unused_cost AS total_cost FROM pod_rows
UNION ALL BY NAME
SELECT hour, node, instance_id, '__idle__' AS namespace, '__idle__' AS pod, amount AS unused_cost, amount AS total_cost
FROM idle WHERE amount <> 0

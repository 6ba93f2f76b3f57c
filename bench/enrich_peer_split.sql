-- bench/enrich.py's peer, second output: the day's pod rows (the Parquet file enrich_peer.sql wrote) as AWS
-- Split Cost Allocation Data line items, one vCPU and one memory item per pod row, as podledger's split_line_items
-- writes them. The braced names are filled by bench/enrich.py.
SELECT hour AS line_item_usage_start_date, hour + INTERVAL 1 HOUR AS line_item_usage_end_date,
       'EKSPod-EC2' AS line_item_operation,
       'arn:aws:eks:' || region || ':' || account || ':pod/' || {cluster} || '/' || namespace || '/' || pod || '/'
           || uid AS line_item_resource_id,
       instance_id AS split_line_item_parent_resource_id, currency AS line_item_currency_code,
       {cost_center} AS cost_center, {cluster} AS cluster, namespace, pod, node,
       {region_prefix} || '-EKS-EC2-' || r.unit AS line_item_usage_type,
       CASE r.kind WHEN 'cpu' THEN cpu_request_core_hours ELSE memory_request_gib_hours END
           AS split_line_item_reserved_usage,
       CASE r.kind WHEN 'cpu' THEN cpu_usage_core_hours ELSE memory_usage_gib_hours END AS split_line_item_actual_usage,
       CASE r.kind WHEN 'cpu' THEN cpu_alloc ELSE mem_alloc END AS split_line_item_split_usage,
       CASE r.kind WHEN 'cpu' THEN cpu_ratio ELSE mem_ratio END AS split_line_item_split_usage_ratio,
       CASE r.kind WHEN 'cpu' THEN cpu_cost ELSE memory_cost END AS split_line_item_split_cost,
       CASE r.kind WHEN 'cpu' THEN cpu_unused_cost ELSE memory_unused_cost END AS split_line_item_unused_cost,
       split_line_item_split_cost * net_factor AS split_line_item_net_split_cost,
       split_line_item_unused_cost * net_factor AS split_line_item_net_unused_cost,
       split_line_item_split_cost * public_on_demand_factor AS split_line_item_public_on_demand_split_cost,
       split_line_item_unused_cost * public_on_demand_factor AS split_line_item_public_on_demand_unused_cost,
       r.kind AS resource
FROM read_parquet({rows}) CROSS JOIN (VALUES ('cpu', 'vCPU-Hours'), ('memory', 'GB-Hours')) r(kind, unit)
WHERE NOT starts_with(namespace, '__')

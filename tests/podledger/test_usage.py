"""Average requests from exported request-seconds: one request per container, whatever its node label did."""

from __future__ import annotations

import polars as pl
import pytest

from podledger.pod_requests import container_requests, pod_effective_requests

KEY = {"namespace": "shop", "pod": "web-0", "uid": "u1"}


def _requests(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame([{**KEY, "container": "app", **row} for row in rows])


@pytest.mark.parametrize(("name", "frames", "expected_cores"), [
    # Pending for 2 minutes (node=""), then scheduled: two series of the same container, one request.
    ("node label changed", {
        "cpu_requests": _requests([{"node": "", "request_core_seconds": 0.5 * 120},
                                   {"node": "n1", "request_core_seconds": 0.5 * 3480}]),
        "pod_running": pl.DataFrame([{**KEY, "running_seconds": 3480.0, "present_seconds": 3600.0}])}, 0.5),
    # Present 20 minutes of the hour (created at :40): the request is not diluted by the absent time.
    ("created mid-hour", {
        "cpu_requests": _requests([{"node": "n1", "request_core_seconds": 2.0 * 1200}]),
        "pod_running": pl.DataFrame([{**KEY, "running_seconds": 1200.0, "present_seconds": 1200.0}])}, 2.0),
    # podledger 0.1 files: present_seconds on every requests row.
    ("0.1 layout", {
        "cpu_requests": _requests([{"node": "", "request_core_seconds": 0.25 * 60, "present_seconds": 60.0},
                                   {"node": "n1", "request_core_seconds": 0.25 * 3540, "present_seconds": 3540.0}]),
        "pod_running": pl.DataFrame([{**KEY, "running_seconds": 3540.0}])}, 0.25),
])
def test_one_request_per_container(name, frames, expected_cores):
    requests = container_requests(frames)
    assert requests.height == 1, name
    assert requests["node"][0] == "n1"
    pods = pod_effective_requests(requests)
    assert pods["cpu_request_cores"][0] == pytest.approx(expected_cores, rel=1e-12), name


@pytest.mark.parametrize(("name", "frames", "expected_cores"), test_one_request_per_container.pytestmark[0].args[1])
def test_pod_hours_request_is_the_containers_average(name, frames, expected_cores):
    """pod_hours divides each pod's summed request-seconds once (per-row seconds of 0.1 files: per container)."""
    from podledger.usage import pod_hours

    pods = pod_hours(frames)
    running_hours = frames["pod_running"]["running_seconds"][0] / 3600
    assert pods["cpu_request_core_hours"][0] == pytest.approx(expected_cores * running_hours, rel=1e-12), name


def _incarnation_frames(usage_uids: list[str]) -> dict[str, pl.DataFrame]:
    """web-0 ran twice in the hour (uid a for 20 minutes, uid b for 40), both on node n1."""
    pods = pl.DataFrame({"namespace": ["shop"] * 2, "pod": ["web-0"] * 2, "uid": ["a", "b"],
                         "running_seconds": [1200.0, 2400.0], "present_seconds": [1200.0, 2400.0]})
    return {
        "pod_running": pods,
        "pod_info": pods.select("namespace", "pod", "uid", pl.lit("n1").alias("node"), "present_seconds"),
        "cpu_requests": pods.select("namespace", "pod", "uid", pl.lit("app").alias("container"), pl.lit("n1").alias("node"),
                                    (pl.col("present_seconds") * 1.0).alias("request_core_seconds")),
        # cAdvisor: 600 core-seconds for a, 4800 for b (the uid from the cgroup path, systemd's underscores for b)
        "cpu_usage": pl.DataFrame({"namespace": ["shop"] * 2, "pod": ["web-0"] * 2, "uid": usage_uids,
                                   "container": ["app"] * 2, "usage_core_seconds": [600.0, 4800.0]}),
    }


def test_each_incarnation_of_a_recreated_pod_carries_only_its_own_usage():
    from podledger.usage import pod_hours

    pods = pod_hours(_incarnation_frames(["a", "b"])).sort("uid")
    assert pods["cpu_usage_core_hours"].to_list() == pytest.approx([600 / 3600, 4800 / 3600])
    assert pods["cpu_request_core_hours"].to_list() == pytest.approx([1200 / 3600, 2400 / 3600])


def test_usage_without_a_uid_is_shared_by_running_time():
    from podledger.usage import pod_hours

    pods = pod_hours(_incarnation_frames(["", ""])).sort("uid")
    assert pods["cpu_usage_core_hours"].to_list() == pytest.approx([5400 / 3600 / 3, 5400 / 3600 * 2 / 3])


def test_a_uid_seen_on_two_nodes_is_split_by_its_time_on_each():
    from podledger.usage import pod_hours

    key = {"namespace": ["shop"], "pod": ["web-0"], "uid": ["a"]}
    frames = {
        "pod_running": pl.DataFrame({**key, "running_seconds": [3600.0], "present_seconds": [3600.0]}),
        "pod_info": pl.DataFrame({**{k: v * 2 for k, v in key.items()}, "node": ["n1", "n2"],
                                  "present_seconds": [900.0, 2700.0]}),
        "cpu_requests": pl.DataFrame({**key, "container": ["app"], "node": ["n1"], "request_core_seconds": [7200.0]}),
        "cpu_usage": pl.DataFrame({**key, "container": ["app"], "usage_core_seconds": [3600.0]}),
    }
    pods = pod_hours(frames).sort("node")
    assert pods["node"].to_list() == ["n1", "n2"]
    assert pods["running_hours"].to_list() == pytest.approx([0.25, 0.75])
    assert pods["cpu_request_core_hours"].to_list() == pytest.approx([0.5, 1.5])
    assert pods["cpu_usage_core_hours"].to_list() == pytest.approx([0.25, 0.75])


def test_stacked_hours_keep_each_hours_own_sources():
    """A day is computed stacked; each hour must still use what it has: phase series in one hour, kube_pod_info
    alone in the next (the fallback is per hour), podledger 0.1 request rows in a third, labels that change."""
    import datetime as dt

    from podledger.hours import stack_hours
    from podledger.usage import pod_hours

    key = {"namespace": ["shop"], "pod": ["web-0"], "uid": ["a"]}
    info = pl.DataFrame({**key, "node": ["n1"], "present_seconds": [3600.0]})
    labels = [[{"key": "label_app", "value": "web"}]]
    with_phase = {
        "pod_running": pl.DataFrame({**key, "running_seconds": [1800.0], "present_seconds": [3600.0]}),
        "pod_info": info,
        "cpu_requests": pl.DataFrame({**key, "container": ["app"], "node": ["n1"], "request_core_seconds": [3600.0]}),
        "pod_labels": pl.DataFrame({**key, "labels": labels}),
    }
    info_only = {  # no kube_pod_status_phase this hour: kube_pod_info says it ran the whole hour
        "pod_running": with_phase["pod_running"].clear(), "pod_info": info,
        "cpu_requests": pl.DataFrame({**key, "container": ["app"], "node": ["n1"], "request_core_seconds": [7200.0]}),
        "pod_labels": pl.DataFrame({**key, "labels": [[{"key": "label_app", "value": "web-v2"}]]}),
    }
    old_layout = {  # podledger 0.1 rows: present_seconds on the request rows
        "pod_running": pl.DataFrame({**key, "running_seconds": [3600.0]}), "pod_info": info,
        "cpu_requests": pl.DataFrame({**key, "container": ["app"], "node": ["n1"], "request_core_seconds": [1800.0],
                                      "present_seconds": [3600.0]}),
        "pod_labels": pl.DataFrame({**key, "labels": labels}),
    }
    hours = [dt.datetime(2026, 11, 2, h, tzinfo=dt.UTC) for h in range(3)]
    hourly = [(h, f) for h, f in zip(hours, (with_phase, info_only, old_layout), strict=True)]
    stacked = pod_hours(stack_hours(hourly)).sort("hour_start")
    alone = [pod_hours(frames) for _, frames in hourly]
    assert stacked["running_hours"].to_list() == pytest.approx([0.5, 1.0, 1.0])
    assert stacked["cpu_request_core_hours"].to_list() == pytest.approx([0.5, 2.0, 0.5])
    assert stacked["pod_labels"].to_list() == ['{"app": "web"}', '{"app": "web-v2"}', '{"app": "web"}']
    for column in ("running_hours", "cpu_request_core_hours", "pod_labels", "node"):
        assert stacked[column].to_list() == [frame[column][0] for frame in alone], column


def test_an_hour_with_nodes_but_no_pod_presence_is_named():
    """Enrichment refuses such an hour (every cent would go to __idle__); the stacked day must still find it."""
    import datetime as dt

    from podledger.hours import stack_hours
    from podledger.usage import hours_without_pods

    key = {"namespace": ["shop"], "pod": ["web-0"], "uid": ["a"]}
    nodes = pl.DataFrame({"node": ["n1"], "provider_id": ["aws:///us-east-1a/i-1"]})
    hours = [dt.datetime(2026, 11, 2, h, tzinfo=dt.UTC) for h in range(4)]
    stacked = stack_hours([
        (hours[0], {"node_info": nodes, "pod_running": pl.DataFrame({**key, "running_seconds": [3600.0]})}),
        (hours[1], {"node_info": nodes, "pod_info": pl.DataFrame({**key, "node": ["n1"], "present_seconds": [3600.0]})}),
        (hours[2], {"node_info": nodes, "pod_running": pl.DataFrame(schema={"namespace": pl.String, "pod": pl.String,
                                                                            "uid": pl.String, "running_seconds": pl.Float64})}),
        (hours[3], {"node_info": nodes.clear()}),  # no nodes either: nothing to refuse
    ])
    assert hours_without_pods(stacked) == [hours[2]]


def test_stacked_usage_keeps_no_sample_apart_from_zero():
    """Usage metrics are summed in one stacked pass: a metric without a row for a pod (or missing from the window) is
    null for that pod, not 0; a sample whose value is null adds 0, as a sum of that metric alone would."""
    from podledger.usage import pod_hours

    frames = _incarnation_frames(["a", "b"])
    frames["cpu_usage"] = frames["cpu_usage"].filter(pl.col("uid") == "a")  # b has no CPU row
    frames["memory_usage"] = pl.DataFrame({"namespace": ["shop"] * 2, "pod": ["web-0"] * 2, "uid": ["a", "b"],
                                           "container": ["app"] * 2, "usage_byte_seconds": [None, 3600.0 * 2**30]},
                                          schema_overrides={"usage_byte_seconds": pl.Float64})
    frames["network_transmit"] = pl.DataFrame({"namespace": ["shop"], "pod": ["web-0"], "uid": [""], "bytes": [300.0]})
    pods = pod_hours(frames).sort("uid")
    assert pods["cpu_usage_core_hours"].to_list() == [pytest.approx(600 / 3600), None]
    assert pods["memory_usage_gib_hours"].to_list() == [0.0, pytest.approx(1.0)]
    # no uid: shared by running time (1200 s and 2400 s)
    assert pods["network_transmit_bytes"].to_list() == pytest.approx([100.0, 200.0])
    assert pods["network_receive_bytes"].to_list() == [None, None]  # not exported at all


def _init_and_sidecar_frames(init_cores: float) -> dict[str, pl.DataFrame]:
    """web-0, present the whole hour on n1: app containers a (0.5 cores, 1 GiB; pending 2 minutes first, so two
    rows) and b (0.25 cores, 0.5 GiB), a regular init container (``init_cores``, 0.5 GiB) and a sidecar (an init
    container with restartPolicy Always: 0.25 cores, 0.25 GiB)."""
    gib = 2.0**30

    def rows(metric: str, items: list[tuple[str, str, float, float]]) -> pl.DataFrame:
        return pl.DataFrame([{**KEY, "container": c, "node": n, metric: value * seconds} for c, n, value, seconds in items])

    return {
        "pod_running": pl.DataFrame([{**KEY, "running_seconds": 3600.0, "present_seconds": 3600.0}]),
        "cpu_requests": rows("request_core_seconds", [("a", "", 0.5, 120), ("a", "n1", 0.5, 3480), ("b", "n1", 0.25, 3600)]),
        "memory_requests": rows("request_byte_seconds", [("a", "", gib, 120), ("a", "n1", gib, 3480),
                                                         ("b", "n1", gib / 2, 3600)]),
        "init_cpu_requests": rows("request_core_seconds", [("setup", "n1", init_cores, 3600), ("proxy", "n1", 0.25, 3600)]),
        "init_memory_requests": rows("request_byte_seconds", [("setup", "n1", gib / 2, 3600), ("proxy", "n1", gib / 4, 3600)]),
        "init_container_info": pl.DataFrame([{**KEY, "container": "setup", "restart_policy": "Never"},
                                             {**KEY, "container": "proxy", "restart_policy": "Always"}]),
    }


@pytest.mark.parametrize(("init_cores", "expected_cores"), [
    (2.0, 2.25),   # the init container dominates: max(init) + Σ sidecar = 2.0 + 0.25
    (0.1, 1.0),    # the apps dominate: Σ app + Σ sidecar = 0.5 + 0.25 + 0.25
])
def test_pod_hours_requests_are_kubernetes_effective_requests(init_cores, expected_cores):
    """pod_hours' per-pod path (app rows summed straight into the pod, init containers grouped per container) gives
    Kubernetes' effective request, the same as the per-container rule."""
    from podledger.usage import pod_hours

    frames = _init_and_sidecar_frames(init_cores)
    pods = pod_hours(frames)
    assert pods.height == 1
    assert pods["node"][0] == "n1"
    assert pods["cpu_request_core_hours"][0] == pytest.approx(expected_cores, rel=1e-12)
    # memory: max(1 + 0.5 + 0.25, 0.5 + 0.25) GiB, the apps and the sidecar
    assert pods["memory_request_gib_hours"][0] == pytest.approx(1.75, rel=1e-12)
    reference = pod_effective_requests(container_requests(frames))
    assert reference["cpu_request_cores"][0] == pytest.approx(expected_cores, rel=1e-12)


def _cluster_frames(pods: int = 24) -> dict[str, pl.DataFrame]:
    """A small cluster's hour with what real exports hold: two containers a pod (CPU and memory rows of the same
    series, in the same order, as the exporter writes them), a pending row without a node, pods recreated under the
    same name (two uids), a pod seen on two nodes, a repeated label series, owners through ReplicaSets, usage
    without a uid for one pod."""
    import random

    rng = random.Random(7)
    pod_rows, info, owner, labels, requests, usage, net = [], [], [], [], [], [], []
    for p in range(pods):
        uids = [f"u{p}a", f"u{p}b"] if p % 7 == 0 else [f"u{p}"]
        for uid in uids:
            key = {"namespace": f"ns{p % 3}", "pod": f"web-{p}", "uid": uid}
            seconds = 3600.0 / len(uids)
            node = f"n{p % 4}"
            pod_rows.append({**key, "running_seconds": seconds, "present_seconds": seconds})
            if p == 5:  # rescheduled: a quarter of the hour on another node
                info += [{**key, "node": node, "present_seconds": seconds / 4},
                         {**key, "node": "n9", "present_seconds": seconds * 3 / 4}]
            else:
                info.append({**key, "node": node, "present_seconds": seconds})
            owner.append({**key, "owner_kind": "ReplicaSet", "owner_name": f"web-{p % 5}-abc"})
            labels += [{**key, "labels": [{"key": "label_app", "value": f"web-{p % 5}"}]}] * (2 if p == 3 else 1)
            for container in ("app", "proxy"):
                cores, mib = rng.choice([0.1, 0.25, 0.5]), rng.choice([128, 256, 512])
                if p == 2:  # pending two minutes first: the same container twice
                    requests.append(({**key, "container": container, "node": ""}, cores * 120, mib * 2**20 * 120))
                requests.append(({**key, "container": container, "node": node}, cores * (seconds - 120 * (p == 2)),
                                 mib * 2**20 * (seconds - 120 * (p == 2))))
                usage.append(({**key, "uid": "" if p == 11 else uid, "container": container},
                              rng.uniform(0, 1) * seconds, rng.uniform(0, 2**30) * seconds))
            net.append((key, rng.uniform(0, 1e9), rng.uniform(0, 1e9)))
    return {
        "pod_running": pl.DataFrame(pod_rows), "pod_info": pl.DataFrame(info), "pod_owner": pl.DataFrame(owner),
        "pod_labels": pl.DataFrame(labels),
        "replicaset_owner": pl.DataFrame([{"namespace": f"ns{n}", "replicaset": f"web-{w}-abc", "owner_kind": "Deployment",
                                           "owner_name": f"web-{w}"} for n in range(3) for w in range(5)]),
        "cpu_requests": pl.DataFrame([{**k, "request_core_seconds": c} for k, c, _ in requests]),
        "memory_requests": pl.DataFrame([{**k, "request_byte_seconds": m} for k, _, m in requests]),
        "cpu_usage": pl.DataFrame([{**k, "usage_core_seconds": c} for k, c, _ in usage]),
        "memory_usage": pl.DataFrame([{**k, "usage_byte_seconds": m} for k, _, m in usage]),
        "network_transmit": pl.DataFrame([{**k, "bytes": t} for k, t, _ in net]),
        "network_receive": pl.DataFrame([{**k, "bytes": r} for k, _, r in net]),
    }


def test_pod_hours_do_not_depend_on_how_the_files_rows_line_up():
    """Metrics of the same series (CPU and memory requests, CPU and memory usage, sent and received bytes) are
    grouped side by side when their rows line up, as the exporter writes them; shuffled, each file on its own,
    they are grouped one below the other. Both give the same pod-hours (nothing merged across pods, nothing lost)."""
    from podledger.pod_frames import side_by_side
    from podledger.usage import pod_hours

    frames = _cluster_frames()
    keys = ["namespace", "pod", "uid", "container", "node"]
    lined_up = [frames["cpu_requests"], frames["memory_requests"]]
    assert [f.height for f in side_by_side(lined_up, keys)] == [frames["cpu_requests"].height]  # side by side
    shuffled = {name: frame.sample(fraction=1.0, shuffle=True, seed=i) for i, (name, frame) in enumerate(frames.items())}
    assert [f.height for f in side_by_side([shuffled["cpu_requests"], shuffled["memory_requests"]], keys)] == \
        [frames["cpu_requests"].height] * 2  # apart
    order = ["namespace", "pod", "uid", "node"]
    ours, theirs = pod_hours(frames).sort(order), pod_hours(shuffled).sort(order)
    assert ours.height == theirs.height == 28 + 1  # 24 pods, 4 of them twice; one on two nodes
    assert ours.select(order).equals(theirs.select(order))
    for column in ("running_hours", "cpu_request_core_hours", "memory_request_gib_hours", "cpu_usage_core_hours",
                   "memory_usage_gib_hours", "network_transmit_bytes", "network_receive_bytes"):
        assert ours[column].to_list() == pytest.approx(theirs[column].to_list(), rel=1e-12), column
    for column in ("controller_name", "pod_labels"):
        assert ours[column].to_list() == theirs[column].to_list(), column
    # and by hand: web-2's CPU request (two rows of "app" while pending, then scheduled) is the containers' sum
    web2 = ours.filter(pl.col("pod") == "web-2")
    expected = frames["cpu_requests"].filter(pl.col("pod") == "web-2")["request_core_seconds"].sum() / 3600
    assert web2["cpu_request_core_hours"][0] == pytest.approx(expected, rel=1e-12)
    assert web2["node"][0] == "n2"
    assert ours.filter(pl.col("pod") == "web-5")["running_hours"].to_list() == pytest.approx([0.25, 0.75])
    assert ours.filter(pl.col("pod") == "web-3")["pod_labels"].to_list() == ['{"app": "web-3"}']


@pytest.mark.parametrize("pods", [
    {"uid": ["a", "b", "c"]},          # unique keys: side by side
    {"uid": ["a", "a", "c"]},          # a repeated key: side by side would not be the join
    {"uid": ["a", None, "c"]},         # a null key never matches in a join
])
def test_attaching_a_pod_frame_is_the_left_join(pods):
    import datetime as dt

    from podledger.pod_frames import PodRows

    hour = dt.datetime(2026, 11, 2, tzinfo=dt.UTC)
    running = pl.DataFrame({"hour_start": [hour] * 3, "namespace": ["shop"] * 3, "pod": ["web-0"] * 3, **pods,
                            "running_seconds": [1.0, 2.0, 3.0]})
    other = running.select("hour_start", "namespace", "pod", "uid", (pl.col("running_seconds") * 10).alias("x"))
    rows = PodRows(running)
    rows.attach(other)
    joined = running.join(other, on=["hour_start", "namespace", "pod", "uid"], how="left", maintain_order="left")
    assert rows.frame.equals(joined)
    assert rows.lines_up == (pods["uid"] == ["a", "b", "c"])


def test_attaching_after_a_join_that_repeated_pods_is_still_the_join():
    """A frame that repeats a pod's key (two owner rows for one pod, say) multiplies that pod's rows when joined; a
    frame attached afterwards must be joined too, even if its keys line up with the repeated rows."""
    import datetime as dt

    from podledger.pod_frames import PK, PodRows

    hour = dt.datetime(2026, 11, 2, tzinfo=dt.UTC)
    running = pl.DataFrame({"hour_start": [hour] * 2, "namespace": ["shop"] * 2, "pod": ["web-0", "web-1"],
                            "uid": ["a", "b"], "running_seconds": [1.0, 2.0]})
    twice = pl.concat([running.head(1), running]).select(*PK, pl.Series("owner", ["x", "y", "z"]))
    later = twice.select(*PK, pl.Series("labels", ["l1", "l2", "l3"]))  # the repeated rows, in the same order
    rows = PodRows(running)
    rows.attach(twice)
    rows.attach(later)
    expected = (running.join(twice, on=PK, how="left", maintain_order="left")
                .join(later, on=PK, how="left", maintain_order="left"))
    assert rows.frame.equals(expected)
    assert rows.frame.height == 5  # web-0 twice, then twice again


def _keyed_frames():
    """Frames keyed (hour, namespace, pod, uid), in key order, with repeats, with nulls and out of order."""
    import datetime as dt
    import random

    rng = random.Random(7)
    hours = [dt.datetime(2026, 11, 2, h, tzinfo=dt.UTC) for h in range(3)]
    keys = sorted({(h, f"ns-{rng.randrange(3)}", f"web-{rng.randrange(12)}", rng.choice(["a", "b", ""]))
                   for h in hours for _ in range(40)})
    frame = pl.DataFrame(keys, schema=["hour_start", "namespace", "pod", "uid"], orient="row").with_columns(
        pl.int_range(pl.len()).cast(pl.Float64).alias("x"))
    repeated = pl.concat([frame, frame.sample(10, seed=1)]).sort("hour_start", "namespace", "pod", "uid",
                                                                 maintain_order=True)
    with_null = frame.with_columns(pl.when(pl.int_range(pl.len()) == 5).then(None).otherwise(pl.col("pod"))
                                   .alias("pod"))
    return {
        "in order": (frame, True, True),
        "in order, repeated keys side by side": (repeated, True, False),
        "shuffled": (frame.sample(fraction=1.0, shuffle=True, seed=3), False, True),
        "shuffled, repeated keys apart": (repeated.sample(fraction=1.0, shuffle=True, seed=4), False, False),
        "reversed": (frame.reverse(), False, True),
        "a null key": (with_null, False, True),
        "only the last key out of order": (frame.with_columns(pl.col("uid").reverse()), False, None),
    }


@pytest.mark.parametrize("case", list(_keyed_frames()))
def test_key_order_shortcuts_answer_what_hashing_the_keys_answers(case):
    """The exporter writes every file in key order, so uniqueness checks and group-bys compare neighbours instead of
    hashing; any other order (or a null key) must give exactly what hashing gives."""
    from podledger.pod_frames import PK, group_in_order, in_key_order, keys_unique

    frame, ordered, unique = _keyed_frames()[case]
    assert in_key_order(frame, PK) == ordered
    assert in_key_order(frame, PK, strict=True) == (ordered and unique is True)
    hashed_unique = not frame.select(pl.struct(*PK).is_duplicated().any()).item()
    if unique is not None:
        assert hashed_unique == unique
    assert keys_unique(frame, PK) == hashed_unique
    aggs = (pl.col("x").sum(), pl.col("x").first().alias("first"), pl.len().alias("n"))
    grouped = group_in_order(frame, PK, *aggs)
    assert grouped.equals(frame.group_by(PK, maintain_order=True).agg(*aggs))


def test_pod_hours_from_files_in_key_order_equal_those_from_shuffled_files():
    """The same cluster's files written in key order (the exporter's) and shuffled give the same pod-hours: the
    key-order shortcuts change the cost, never the rows."""
    from podledger.catalog import CATALOG_BY_NAME
    from podledger.pod_frames import PK, in_key_order
    from podledger.usage import pod_hours

    def keys(name: str, frame: pl.DataFrame) -> list[str]:
        return [k for k in CATALOG_BY_NAME[name].keys if k in frame.columns]

    frames = {name: frame.sort(keys(name, frame)) for name, frame in _cluster_frames().items()}
    assert all(in_key_order(frame, keys(name, frame)) for name, frame in frames.items())
    assert in_key_order(frames["cpu_usage"], PK[1:]) and not in_key_order(frames["cpu_usage"][::-1], PK[1:])
    shuffled = {name: frame.sample(fraction=1.0, shuffle=True, seed=i) for i, (name, frame) in enumerate(frames.items())}
    order = ["namespace", "pod", "uid", "node"]
    ours, theirs = pod_hours(frames).sort(order), pod_hours(shuffled).sort(order)
    assert ours.height == 29
    assert sorted(ours.columns) == sorted(theirs.columns)  # (attached in another order when nothing lines up)
    theirs = theirs.select(ours.columns)
    for column in ours.columns:
        if ours[column].dtype == pl.Float64:
            assert ours[column].is_null().equals(theirs[column].is_null()), column
            assert ours[column].drop_nulls().to_list() == pytest.approx(theirs[column].drop_nulls().to_list(),
                                                                        rel=1e-12), column
        else:
            assert ours[column].to_list() == theirs[column].to_list(), column
    # a pod no request file names: its requests stay unknown (null), never a made-up 0, and cost no request-hours
    unnamed = {name: (frame.filter(pl.col("pod") != "web-4") if "request" in name else frame)
               for name, frame in frames.items()}
    web4 = pod_hours(unnamed).filter(pl.col("pod") == "web-4")
    assert web4.height == 1 and web4["cpu_request_cores"].is_null().all() and web4["request_node"].is_null().all()
    assert web4["cpu_request_core_hours"].to_list() == [0.0]

"""Two Ray nodes on one machine (ray.cluster_utils.Cluster), one of them holding a device: the
builds spread over both nodes, each device's timings run on its own node, and no timing
overlaps any other task on that node."""

from __future__ import annotations

import pytest
import yaml

from tests.sweep_helpers import overlaps, worker_path, write_sweep

pytest.importorskip("ray")


def test_builds_spread_timings_pinned_to_the_device_node(tmp_path, monkeypatch):
    import ray
    from ray.cluster_utils import Cluster

    from edgekit import sweep
    from edgekit.sweep.execute import resource

    worker_path(monkeypatch)
    (tmp_path / "devices.yaml").write_text(yaml.safe_dump({"devices": {"edge": {"kind": "local"}}}))
    f = write_sweep(tmp_path, devices=["local", "edge"], devices_file="devices.yaml")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        edge = cluster.add_node(num_cpus=1, resources={resource("edge"): 1})
        cluster.wait_for_nodes()
        head_id = cluster.head_node.node_id
        res = sweep.run(f, tmp_path / "out", address=cluster.address, max_concurrent=2)
        assert not ray.is_initialized()  # it joined, and left; the cluster itself is ours to stop
    finally:
        ray.shutdown()
        cluster.shutdown()
    tasks = res.summary["tasks"]
    builds = [t for t in tasks if t["kind"] == "build"]
    timings = [t for t in tasks if t["kind"] == "timing"]
    assert len(builds) == 2 and len(timings) == 4  # one build per setting, timed on each device
    assert {t["node"] for t in builds} == {head_id, edge.node_id}
    assert {t["node"] for t in timings if t["device"] == "edge"} == {edge.node_id}
    assert {t["node"] for t in timings if t["device"] == "local"} == {head_id}  # local: the driver's node
    assert overlaps(tasks) == []
    trials = res.summary["trials"]
    assert sorted(t["device"] for t in trials) == ["edge", "edge", "local", "local"]
    assert all(t["status"] == "ok" for t in trials), [t["error"] for t in trials]
    assert set(res.summary["chosen"]) == {"local", "edge"}

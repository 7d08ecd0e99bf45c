"""One sweep run: ask the search for settings, turn each into a trial recipe, take finished
trials from the cache, and run the rest on the cluster as build → timing per device → finish,
keeping at most `max_concurrent` settings in flight. A failed trial is recorded with its
one-line error and the sweep goes on; Ray's own failures (a worker that died) are recorded for
this run but not cached, so the next run tries again."""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from edgekit.core.progress import Progress, no_progress
from edgekit.errors import UsageError
from edgekit.sweep import execute, pareto, search, trials
from edgekit.sweep.spec import Sweep, TrialRecipe, build_recipe, load_sweep


@dataclass
class SweepResult:
    out_dir: Path
    summary: dict[str, Any]  # what sweep.json holds
    started: int  # trials run by this call (0 when every trial came from the cache)
    cached: int
    chosen: dict[str, Optional[Path]]  # device -> chosen recipe YAML (None: no trial met the objective)


@dataclass
class _Point:
    settings: dict[str, Any]
    recipe: TrialRecipe
    tids: dict[str, str]  # device -> trial id
    pending: set[str] = field(default_factory=set)
    ticks: dict[str, Callable[[int], None]] = field(default_factory=dict)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _fingerprints(cl: execute.Cluster, sweep: Sweep) -> dict[str, dict[str, Any]]:
    """Each device's identity, asked where it is: the cache key needs it before anything runs."""
    from edgekit.profile.devices import SshDevice
    from edgekit.profile.schema import local_device

    out: dict[str, dict[str, Any]] = {}
    refs = {}
    for name, cfg in sweep.devices.items():
        if name == "local":
            out[name] = local_device("local").model_dump(mode="json")
        elif isinstance(cfg, SshDevice):  # known once measured; until then, the host stands for it
            who = f"{cfg.user + '@' if cfg.user else ''}{cfg.host}:{cfg.port}"
            out[name] = {"name": name, "kind": "ssh", "host": cfg.host, "cpu": "", "cpu_class": "",
                         "fingerprint": f"ssh={who}"}
        else:
            pl = cl.placement[name]
            refs[name] = cl.remote(execute.probe_task).options(
                num_cpus=0, resources=pl.resources, scheduling_strategy=cl.pinned(pl.node), max_retries=0).remote(name)
    for name, ref in refs.items():
        out[name] = cl.ray.get(ref)["device"]
    return out


class _Run:
    def __init__(self, sweep: Sweep, cl: execute.Cluster, devices: dict[str, dict[str, Any]], trials_dir: Path,
                 max_concurrent: int, progress: Progress) -> None:
        s = sweep.spec.search
        self.sweep, self.cl, self.devices, self.trials_dir = sweep, cl, devices, trials_dir
        self.max_concurrent, self.progress = max_concurrent, progress
        self.search = search.make(s.method, sweep.spec.vary, s.trials, s.seed)
        self.records: dict[str, dict[str, Any]] = {}
        self.tasks: list[dict[str, Any]] = []
        self.open: dict[str, _Point] = {}
        self.scores: dict[str, Optional[float]] = {}
        self.inflight: dict[Any, tuple[str, _Point, dict[str, Any]]] = {}
        self.started = self.cached = 0
        self.exhausted = False
        self.overall = progress(f"sweep {sweep.spec.name}: trials", self.search.total * len(sweep.devices))

    # -- bookkeeping -------------------------------------------------------------------------
    def _record(self, point: _Point, device: str, status: str, **extra: Any) -> dict[str, Any]:
        dev = self.devices[device]
        return {"id": point.tids[device], "sweep": self.sweep.spec.name, "settings": point.settings,
                "device": device, "device_fingerprint": dev["fingerprint"], "cpu_class": dev.get("cpu_class", ""),
                "cpu": dev.get("cpu", ""), "recipe_sha256": point.recipe.sha256, "status": status,
                "error": None, "exit_code": None, "results": [], "finished": _now(), **extra}

    def _done(self, point: _Point, device: str, record: dict[str, Any]) -> None:
        self.records[record["id"]] = record
        point.pending.discard(device)
        if device in point.ticks:
            point.ticks[device](1)
        self.overall(1)
        if not point.pending:
            self._close(point)

    def _close(self, point: _Point) -> None:
        k = search.key(point.settings)
        value = self._score([self.records[t] for t in point.tids.values() if t in self.records])
        self.scores[k] = value
        self.open.pop(k, None)
        self.search.tell(point.settings, value)

    def _score(self, records: list[dict[str, Any]]) -> Optional[float]:
        """What the model-based search minimises: per device the best feasible objective, then
        their geometric mean (devices differ by multiples); None if any device has none."""
        obj = self.sweep.spec.objective
        best = []
        for r in records:
            rows = [x for x in r.get("results", []) if pareto.feasible(x, obj)]
            if not rows:
                return None
            best.append(min(x[obj.minimize] for x in rows))
        if not best or min(best) <= 0:
            return None
        return math.exp(sum(math.log(b) for b in best) / len(best))

    # -- the loop ----------------------------------------------------------------------------
    def loop(self) -> None:
        try:
            while True:
                self._fill()
                if not self.inflight:
                    if self.exhausted:
                        return
                    continue
                ready, _ = self.cl.ray.wait(list(self.inflight), num_returns=1)
                self._handle(ready[0])
        except BaseException:
            for ref in list(self.inflight):  # a joined cluster keeps running what we leave behind
                try:
                    self.cl.ray.cancel(ref, force=True)
                except Exception:  # noqa: BLE001 - already finished or gone: nothing to cancel
                    pass
            raise

    def _fill(self) -> None:
        while not self.exhausted and len(self.open) < self.max_concurrent:
            asked = self.search.ask(1)
            if not asked:
                self.exhausted = True
                return
            self._open_point(asked[0])

    def _open_point(self, settings: dict[str, Any]) -> None:
        k = search.key(settings)
        if k in self.scores:  # asked again (TPE may): the answer is known
            self.search.tell(settings, self.scores[k])
            self.overall(len(self.sweep.devices))
            return
        if k in self.open:  # asked again while running: told when the first one finishes
            self.overall(len(self.sweep.devices))
            return
        tr = build_recipe(self.sweep, settings, f"{self.sweep.path.name}: trial")  # settings are in the record
        point = _Point(settings, tr, {d: trials.trial_id(tr.sha256, self.devices[d]["fingerprint"], d)
                                      for d in self.sweep.devices})
        self.open[k] = point
        point.pending = set(point.tids)
        need = []
        for device, tid in point.tids.items():
            rec = trials.load(self.trials_dir, tid)
            if rec is not None:
                self.cached += 1
                self._done(point, device, {**rec, "cached": True})
            else:
                need.append(device)
        if not need:
            return
        if tr.error is not None:  # the combination is refused by the schema: nothing to run
            for device in need:
                rec = self._record(point, device, "failed", error=tr.error, exit_code=2)
                trials.write_failed(self.trials_dir, rec)
                self._done(point, device, rec)
            return
        self.started += len(need)
        for device in need:
            label = ", ".join(f"{p}={v}" for p, v in settings.items())
            point.ticks[device] = self.progress(f"{point.tids[device][:8]} {device}: {label}", 3)
        label = f"trial-{point.tids[need[0]][:8]}.yaml"
        info, blob = self.cl.remote(execute.build_task).options(
            num_cpus=1, num_returns=2, scheduling_strategy="SPREAD", max_retries=0,
        ).remote(tr.text, str(self.sweep.base_path.parent), label)
        self.inflight[info] = ("build", point, {"blob": blob, "need": need})

    def _handle(self, ref: Any) -> None:
        kind, point, ctx = self.inflight.pop(ref)
        try:
            value = self.cl.ray.get(ref)
        except self.cl.ray.exceptions.RayError as exc:  # the cluster failed, not the trial: not cached
            from edgekit.errors import first_line

            devices = ctx["need"] if kind == "build" else [ctx["device"]]
            for device in devices:
                if device in point.pending:
                    msg = f"{kind} task lost: {type(exc).__name__}: {first_line(exc)}"
                    self._done(point, device, self._record(point, device, "failed", error=msg, exit_code=1))
            return
        stamp = {k: v for k, v in value.items() if k in ("kind", "node", "host", "pid", "started", "ended")}
        ids = [point.tids[d] for d in ctx["need"]] if kind == "build" else [point.tids[ctx["device"]]]
        self.tasks.append({**stamp, "trials": ids, "device": ctx.get("device")})
        if kind == "build":
            self._built(point, value, ctx)
        elif kind == "timing":
            self._timed(point, value, ctx)
        else:
            self._done(point, ctx["device"], ctx["record"])

    def _built(self, point: _Point, info: dict[str, Any], ctx: dict[str, Any]) -> None:
        stamp = {k: info[k] for k in ("node", "host", "started", "ended")}
        if not info["ok"]:
            for device in ctx["need"]:
                rec = self._record(point, device, "failed", error=info["error"], exit_code=info["exit_code"], build=stamp)
                trials.write_failed(self.trials_dir, rec)
                self._done(point, device, rec)
            return
        for device in ctx["need"]:
            point.ticks[device](1)
            pl = self.cl.placement[device]
            opts: dict[str, Any] = {"num_cpus": pl.num_cpus, "resources": pl.resources, "max_retries": 0}
            if pl.node is not None:
                opts["scheduling_strategy"] = self.cl.pinned(pl.node)
            ref = self.cl.remote(execute.time_task).options(**opts).remote(
                ctx["blob"], info["targets"], point.recipe.recipe.profile, device, self.sweep.devices[device],
                str(self.sweep.base_path.parent))
            self.inflight[ref] = ("timing", point, {**ctx, "device": device, "info": info, "build": stamp})

    def _timed(self, point: _Point, timing: dict[str, Any], ctx: dict[str, Any]) -> None:
        device, info = ctx["device"], ctx["info"]
        stamp = {k: timing[k] for k in ("node", "host", "started", "ended")}
        rows, classes = [], set()
        for tg in info["targets"]:
            key = f"{tg['artifact']}/{tg['runtime']}"
            m = timing["measurements"].get(key)
            row = {k: tg[k] for k in ("artifact", "runtime", "precision", "size_mb", "metric", "value", "reference",
                                      "drop", "fidelity")}
            gen = (timing.get("generation") or {}).get(key)
            if gen is not None:  # a language model: latency is decode time per token
                from edgekit.runtimes.cpu_classes import local_class

                classes.add(local_class())
                d = gen["decode_ms_per_token"]
                first = next(iter(gen["prompts"].values()), {}).get("ttft_ms", {})
                row.update(latency_p50_ms=d["median_ms"], latency_p90_ms=d["p90_ms"], latency_p99_ms=d["p99_ms"],
                           latency_mean_ms=d["mean_ms"], latency_n=d["n"], latency_cv=d["cv"],
                           latency_p90_upper_bound_ms=d["p90_upper_bound_ms"], latency_is="decode ms per token",
                           decode_tokens_per_s=gen["decode_tokens_per_s"], ttft_p90_ms=first.get("p90_ms"),
                           peak_rss_mb=gen.get("peak_rss_mb"))
            elif m is not None:
                classes.add(m["device"]["cpu_class"])
                row.update(latency_p50_ms=m["median_ms"], latency_p90_ms=m["p90_ms"], latency_p99_ms=m["p99_ms"],
                           latency_mean_ms=m["mean_ms"], latency_n=m["n"], latency_cv=m["cv"],
                           latency_p90_upper_bound_ms=m["p90_upper_bound_ms"])
            else:
                row["timing_error"] = timing["errors"].get(key) or timing["errors"].get("*", "not measured")
            rows.append(row)
        measured = [r for r in rows if "timing_error" not in r]
        extra: dict[str, Any] = {"results": rows, "build": ctx["build"], "timing": stamp}
        if classes:
            extra["cpu_class"] = sorted(classes)[0]
        if not measured:  # nothing timed: recorded for this run, not cached (a device may be back later)
            err = next(iter(timing["errors"].values()), "no target could be timed")
            self._done(point, device, self._record(point, device, "failed", error=err, exit_code=4, **extra))
            return
        point.ticks[device](1)
        record = self._record(point, device, "ok", **extra)
        driver = self.cl.driver_node
        ref = self.cl.remote(execute.finalize_task).options(
            num_cpus=min(1.0, self.cl.node_cpus.get(driver, 0.0)), scheduling_strategy=self.cl.pinned(driver),
            max_retries=0,
        ).remote(ctx["blob"], info, timing, record, str(self.trials_dir))
        self.inflight[ref] = ("finalize", point, {"device": device, "record": record})


def run(sweep_file: str | Path, out_root: str | Path = "out", address: Optional[str] = None,
        max_concurrent: Optional[int] = None, resume: bool = False,
        progress: Optional[Progress] = None) -> SweepResult:
    """`edgekit sweep` from Python: validate the sweep file, run what the cache lacks on Ray,
    write out/<name>/ (trials/, sweep.json, the Pareto front, chosen/<device>.yaml, sweep.html)."""
    from edgekit.sweep import report

    if max_concurrent is not None and max_concurrent < 1:
        raise UsageError(f"--max-concurrent must be at least 1; got {max_concurrent}")
    sweep = load_sweep(sweep_file)
    sweep_dir = Path(out_root) / sweep.spec.name
    prev = trials.check(sweep_dir, resume)
    trials_dir = sweep_dir / "trials"
    with execute.connect(address, sweep.devices) as cl:
        devices = _fingerprints(cl, sweep)
        state = trials.begin(sweep_dir, sweep.sha256, prev)
        r = _Run(sweep, cl, devices, trials_dir, max_concurrent or cl.total_cpus(), progress or no_progress)
        r.loop()
    summary, chosen = report.write(sweep_dir, sweep, list(r.records.values()), r.tasks, devices)
    trials.finish(sweep_dir, state, r.started, r.cached)
    return SweepResult(sweep_dir, summary, r.started, r.cached, chosen)

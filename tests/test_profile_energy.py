"""Energy meters against fake sysfs trees with the real file layouts, a recorded CSV, and the
window arithmetic; on this machine `auto` must report unavailable with the reason."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgekit.errors import BackendUnavailable
from edgekit.profile.energy import EnergySpec, open_meter
from edgekit.profile.energy.base import Meter, MeterError, Trace
from edgekit.profile.energy.external import read_csv
from edgekit.profile.energy.jetson import JetsonMeter
from edgekit.profile.energy.rapl import RaplMeter, unwrap
from edgekit.profile.energy.record import EnergyRecorder
from edgekit.profile.schema import MeterInfo


def rapl_tree(root: Path, energy_uj: int, max_uj: int = 262143328850) -> Path:
    zone = root / "sys/class/powercap/intel-rapl:0"
    zone.mkdir(parents=True)
    (zone / "name").write_text("package-0\n")
    (zone / "max_energy_range_uj").write_text(f"{max_uj}\n")
    (zone / "energy_uj").write_text(f"{energy_uj}\n")
    sub = root / "sys/class/powercap/intel-rapl:0:0"  # a sub-zone (core): must not be added again
    sub.mkdir()
    (sub / "energy_uj").write_text("5\n")
    (sub / "max_energy_range_uj").write_text("100\n")
    return zone


def test_rapl_reads_package_counter_across_a_wrap(tmp_path):
    zone = rapl_tree(tmp_path, energy_uj=999_000, max_uj=1_000_000)
    m = RaplMeter(str(tmp_path))
    assert m.info.kind == "counter" and m.info.needs_root and "package-0" in m.info.scope
    assert m.read() == 0.0
    (zone / "energy_uj").write_text("500000\n")  # wrapped: 1000 uJ to the top, then 500000
    assert m.read() == pytest.approx(0.501)
    (zone / "energy_uj").write_text("700000\n")
    assert m.read() == pytest.approx(0.701)


@given(st.integers(1, 2**40), st.data())
def test_unwrap_gives_the_true_difference(max_range, data):
    prev = data.draw(st.integers(0, max_range - 1))
    delta = data.draw(st.integers(0, max_range - 1))
    assert unwrap(prev, (prev + delta) % max_range, max_range) == delta


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_rapl_permission_error_names_the_fix(tmp_path):
    zone = rapl_tree(tmp_path, 10)
    (zone / "energy_uj").chmod(0)
    with pytest.raises(MeterError, match=r"permission denied .*CVE-2020-8694.*chmod o\+r"):
        RaplMeter(str(tmp_path))


def test_rapl_missing_is_explained(tmp_path):
    with pytest.raises(MeterError, match="no .*intel-rapl:N zones"):
        RaplMeter(str(tmp_path))


def test_jetson_hwmon_layout_reads_vdd_in(tmp_path):
    hw = tmp_path / "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon3"
    hw.mkdir(parents=True)
    for n, (label, mv, ma) in enumerate([("VDD_IN", 5000, 1200), ("VDD_CPU_GPU_CV", 5000, 400)], 1):
        (hw / f"in{n}_label").write_text(label + "\n")
        (hw / f"in{n}_input").write_text(f"{mv}\n")
        (hw / f"curr{n}_input").write_text(f"{ma}\n")
    m = JetsonMeter(str(tmp_path))
    assert m.read() == pytest.approx(6.0) and m.info.scope == "board" and m.info.kind == "sampled"
    assert JetsonMeter(str(tmp_path), "VDD_CPU_GPU_CV").read() == pytest.approx(2.0)


def test_jetson_legacy_iio_layout(tmp_path):
    iio = tmp_path / "sys/bus/i2c/drivers/ina3221x/0-0040/iio:device0"
    iio.mkdir(parents=True)
    (iio / "rail_name_0").write_text("VDD_IN\n")
    (iio / "in_power0_input").write_text("4321\n")
    assert JetsonMeter(str(tmp_path)).read() == pytest.approx(4.321)
    with pytest.raises(MeterError, match="no rail 'VDD_GPU'"):
        JetsonMeter(str(tmp_path), "VDD_GPU")


RECORDED = """timestamp,watts
1700000000.0,10
1700000001.0,10
1700000002.0,30
1700000003.0,30
1700000004.0,30
"""


def test_external_csv_aligned_to_the_window(tmp_path):
    log = tmp_path / "meter.csv"
    log.write_text(RECORDED)
    trace = read_csv(log)
    assert trace.joules(1700000000.0, 1700000001.0) == pytest.approx(10.0)  # idle
    assert trace.joules(1700000002.0, 1700000004.0) == pytest.approx(60.0)
    assert trace.joules(1700000001.5, 1700000002.0) == pytest.approx(0.5 * (20 + 30) / 2)
    with pytest.raises(MeterError, match="covers"):
        trace.joules(1699999999.0, 1700000001.0)


def test_external_csv_iso_timestamps_and_bad_rows(tmp_path):
    log = tmp_path / "m.csv"
    log.write_text("2026-01-01T00:00:00Z,2\n2026-01-01T00:00:02Z,4\n")
    t = read_csv(log)
    assert t.joules(t.t[0], t.t[-1]) == pytest.approx(6.0)
    log.write_text("1,2\nabc,def\n3,4\n")
    with pytest.raises(MeterError, match=r"m.csv:2: expected 'timestamp, watts'"):
        read_csv(log)


@given(st.lists(st.floats(0, 500), min_size=2, max_size=30), st.floats(0.01, 1.0))
def test_counter_and_power_traces_agree(watts, dt):
    """Integrating a power trace equals differencing the counter built from it."""
    t = [i * dt for i in range(len(watts))]
    power = Trace("sampled", t, list(watts))
    cum = [0.0]
    for i in range(1, len(t)):
        cum.append(cum[-1] + (watts[i] + watts[i - 1]) / 2 * dt)
    counter = Trace("counter", t, cum)
    assert power.joules(t[0], t[-1]) == pytest.approx(counter.joules(t[0], t[-1]), rel=1e-9, abs=1e-9)


class FakeCounter(Meter):
    """A counter meter whose joules grow at a known rate (the recorder's arithmetic under test)."""

    def __init__(self, watts: float) -> None:
        import time

        self.t0, self.watts, self.clock = time.time(), watts, time.time
        self.info = MeterInfo(name="fake", kind="counter", scope="package")

    def read(self) -> float:
        return (self.clock() - self.t0) * self.watts


def test_recorder_gross_and_net_per_inference():
    import time

    rec = EnergyRecorder(FakeCounter(20.0), "", idle_s=0.2, period_s=0.01)
    rec.start()
    started = time.time()
    time.sleep(0.3)
    e = rec.finish(started, time.time(), inferences=10)
    assert e.provenance == "measured_counter"
    assert e.idle_w == pytest.approx(20.0, rel=0.05)
    assert e.gross_j_per_inference == pytest.approx(20.0 * 0.3 / 10, rel=0.1)
    assert abs(e.net_j_per_inference) < 0.05 * e.gross_j_per_inference  # constant power: nothing above idle


def test_auto_reports_unavailable_with_reasons(tmp_path):
    meter, reason = open_meter(EnergySpec(meter="auto", sysfs_root=str(tmp_path)))
    assert meter is None
    assert "rapl" in reason.lower() and "jetson" in reason.lower() and "nvml" in reason.lower()
    e = EnergyRecorder(None, reason, 1.0, 0.05).finish(0.0, 1.0, 5)
    assert e.provenance == "unavailable" and e.reason == reason and e.net_j_per_inference is None


def test_explicit_meter_that_cannot_read_is_exit_4(tmp_path):
    with pytest.raises(BackendUnavailable, match="profile.energy.meter 'rapl' cannot read here: RAPL: no"):
        open_meter(EnergySpec(meter="rapl", sysfs_root=str(tmp_path)))
    assert BackendUnavailable.exit_code == 4


def test_estimate_is_opt_in_and_labelled():
    with pytest.raises(ValueError, match="needs tdp_w"):
        EnergySpec(meter="estimate")
    meter, _ = open_meter(EnergySpec(meter="estimate", tdp_w=100.0))
    assert meter.info.kind == "model"
    rec = EnergyRecorder(meter, "", idle_s=0.1, period_s=0.02)
    rec.start()
    import time

    s = time.time()
    time.sleep(0.1)
    e = rec.finish(s, time.time(), 4)
    assert e.provenance == "estimated_model" and "not a measurement" in e.reason

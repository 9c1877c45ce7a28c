"""Audit of ``optbench perf``'s methodology and output: what it times, how it flags a contender
that did not converge, what it prints and writes, and how it refuses bad input.

No timing of optbench is asserted (the machine is shared). The few measurements below compare a
time against a sleep injected around, not inside, what is timed, or a compile against zero.
"""
import contextlib
import json
import os
import time
import types

import jax
import pytest

from bench import cli, cmd_perf, perf


def _row(kind, method, ms, solved=1.0, family="rosenbrock-2d", contender=None):
    return {"case": f"{family} B=4", "family": family, "size": 4, "method": method,
            "contender": contender or f"{kind} {method}", "kind": kind, "compile_s": 0.5, "median_ms": ms,
            "repeats": 1, "times_ms": [ms], "ms_per_iter": ms / 10, "nit_median": 5.0, "nit_max": 10,
            "solved": solved, "note": "", "growth": None, "clock": "wall"}


def _one_line_error(capsys, *needles):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("optbench: error:"), err
    for n in needles:
        assert n in err, err
    return err


# -- the solved column and non-converged contenders ------------------------------------------------

def test_solved_below_one_is_never_printed_as_100_percent():
    """999 of 1000 starts is 99.9 %, 9999 of 10⁴ is 99.99 %: neither is 100 % (the column was
    rounded to whole percent, so a contender that missed starts read as if it solved them all)."""
    for solved in (999 / 1000, 9999 / 10000, 0.9996):
        rows = [_row("floor", "newton", 1.0), _row("optbench", "newton", 2.0, solved=solved)]
        perf._add_ratios(rows)
        line = perf.format_table(rows).splitlines()[3]
        assert "100%" not in line, line
        assert "99.9%" in line, line
    rows = [_row("floor", "newton", 1.0, solved=1.0), _row("peer", "newton", 2.0, solved=0.0005)]
    perf._add_ratios(rows)
    assert "<0.1%" in perf.format_table(rows).splitlines()[3]


def test_ratios_of_a_contender_that_did_not_converge_are_flagged():
    """A peer that solved 91 % of the starts (jaxopt BFGS in the README's table) must not have its
    time compared as if it had converged: its × floor and peer/optbench cells carry the mark and
    the table explains it; an optbench variant compared with that peer is flagged too; rows that
    solved every start against rows that did are not."""
    rows = [_row("floor", "bfgs", 1.0), _row("optbench", "bfgs", 5.0), _row("optbench", "bfgs", 4.0),
            _row("peer", "bfgs", 587.0, solved=0.91), _row("optbench", "lbfgs", 10.0),
            _row("peer", "lbfgs", 20.0)]
    perf._add_ratios(rows)
    assert rows[3]["speedup"] == pytest.approx(587.0 / 5.0) and rows[3]["x_floor"] == pytest.approx(587.0)
    assert set(rows[3]["flagged"]) == {"x_floor", "speedup"}
    assert rows[2]["flagged"] == ["speedup"]          # 587 / 4: against the unconverged peer
    assert rows[1]["flagged"] == [] and rows[4]["flagged"] == [] and rows[5]["flagged"] == []
    table = perf.format_table(rows)
    line = table.splitlines()[2 + 3]
    assert f"117×{perf.FLAG_MARK}" in line and f"587×{perf.FLAG_MARK}" in line, line
    assert perf.FLAG_NOTE in table
    assert perf.FLAG_MARK not in table.splitlines()[2 + 5]
    # the CSV carries the flags too (the file says what the table says)
    csv = perf.rows_csv(rows).splitlines()
    assert csv[0].split(",")[-1] == "flagged" and csv[4].endswith("x_floor;speedup")


# -- what is timed ----------------------------------------------------------------------------------

def test_scipy_time_excludes_the_blas_thread_limit(monkeypatch):
    """scipy's runs are timed around scipy.optimize.minimize, not around threadpoolctl's set-up
    (which scans the loaded libraries, ~1.5 ms here, and was then multiplied by the subset's
    scale). A set-up made to take 0.3 s must not show in the measured time of a 2-start loop
    that takes milliseconds."""
    @contextlib.contextmanager
    def slow_limit(n):
        time.sleep(0.3)
        yield

    monkeypatch.setattr(perf, "_blas_threads", slow_limit)
    case = perf.rosenbrock_case(2, 1e-8, jax.devices("cpu")[0], scipy_starts=2, methods=("newton",))
    case.contenders = [c for c in case.contenders if c.label == "scipy trust-exact"]
    assert len(case.contenders) == 1
    (row,) = perf.measure_case(case, 1)
    assert row["solved"] == 1.0
    assert row["median_ms"] < 250, row


def test_each_scipy_peer_on_extended_rosenbrock_compiles_its_own_functions():
    """Every contender's compile is measured the same way: each scipy peer jits f, ∇f (and Hv
    where its method uses it) as its user would. They shared one pair of jitted functions, so the
    first peer's compile column held the compile and the others read 0.00."""
    case = perf.ext_rosenbrock_case(8, 1e-6, jax.devices("cpu")[0], methods=("newton-cg", "trust-ncg", "lbfgs"))
    scipy = [c for c in case.contenders if c.label.startswith("scipy")]
    assert [c.label for c in scipy] == ["scipy Newton-CG", "scipy trust-ncg", "scipy L-BFGS-B"]
    for c in scipy:
        c.prepare()
        # a jit compile takes milliseconds at least; a call of an already compiled one, microseconds
        assert c.prepare.compile_s > 5e-3, (c.label, c.prepare.compile_s)


# -- the command: bad input, notes, files ----------------------------------------------------------

def _no_timing(monkeypatch):
    monkeypatch.setattr(perf, "run_perf", lambda *a, **kw: pytest.fail("perf timed before refusing its input"))


@pytest.mark.parametrize("argv, needle", [
    (["--cases", ","], "names no case family"),
    (["--cases", ""], "--cases needs a value, got an empty string"),
    (["--repeats", "1000000000"], "--repeats must be"),
    (["--large", "--cases", "rosenbrock"], "nothing to time"),
    (["--large", "--methods", "bfgs"], "nothing to time"),
    (["--repeats", "0"], "--repeats must be"),
    (["--repeats", "-2"], "--repeats must be"),
])
def test_perf_bad_input_is_one_line_before_timing(monkeypatch, capsys, argv, needle):
    """An empty --cases, or a family the preset has no size of (--large has no 2-D Rosenbrock),
    ran nothing, printed an empty table and exited 0; a huge --repeats timed (practically) for
    ever."""
    _no_timing(monkeypatch)
    assert cli.main(["perf", "--no-write"] + (argv if "--large" in argv else ["--quick"] + argv)) == 2
    _one_line_error(capsys, needle)


def _fake_run_perf(rows):
    def run_perf(sizes, device_name="cpu", families=(), repeats=None, progress=None, clock="wall", methods=None):
        out = [dict(r) for r in rows]
        perf._add_ratios(out)
        return out
    return run_perf


def test_a_missing_peer_is_skipped_with_a_note(monkeypatch, capsys, tmp_path):
    """A peer that is not installed: its rows are left out without an error, and the table (and
    perf.json) say which peers were skipped instead of leaving them out silently."""
    real_have = perf._have
    monkeypatch.setattr(perf, "_have", lambda m: False if m in ("scipy.optimize", "jaxopt") else real_have(m))
    case = perf.rosenbrock_case(4, 1e-8, jax.devices("cpu")[0], scipy_starts=2)
    labels = [c.label for c in case.contenders]
    assert not any(lb.startswith(("scipy", "jaxopt")) for lb in labels)
    if real_have("optimistix"):   # a peer that is installed keeps its rows (CI installs no optional peers)
        assert "optimistix BFGS" in labels
    monkeypatch.setattr(perf, "run_perf", _fake_run_perf([_row("floor", "newton", 1.0),
                                                           _row("optbench", "newton", 2.0)]))
    out = tmp_path / "p"
    assert cli.main(["perf", "--quick", "--cases", "rosenbrock", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    note = [ln for ln in printed.splitlines() if ln.startswith("Peers not installed")]
    assert len(note) == 1 and "scipy" in note[0] and "jaxopt" in note[0] and "optax" not in note[0]
    assert note[0] in (out / "table.md").read_text()
    # scipy and jaxopt, plus any peer really not installed here (CI installs no optional peers)
    expected = [name for name, module in perf.PEER_MODULES.items()
                if name in ("scipy", "jaxopt") or not real_have(module)]
    assert json.loads((out / "perf.json").read_text())["meta"]["peers_missing"] == expected


def test_perf_json_records_the_precision_the_rows_ran_in(monkeypatch, capsys, tmp_path):
    """The regression family runs in float32; perf.json's provenance said float64 for every run."""
    monkeypatch.setattr(perf, "run_perf", _fake_run_perf([_row("floor", "read", 1.0, solved=None, family="linreg"),
                                                           _row("optbench", "gd", 2.0, solved=None, family="linreg")]))
    out = tmp_path / "p"
    assert cli.main(["perf", "--quick", "--cases", "linreg", "--out", str(out)]) == 0
    meta = json.loads((out / "perf.json").read_text())["meta"]
    assert meta["dtype"] == "float32"
    # and the rest of the provenance is there
    for key in ("command", "created", "versions", "backend", "device_kind", "cpu_threads", "peers", "git_commit"):
        assert meta.get(key) is not None, key
    assert meta["config"]["clock"] == "wall" and meta["config"]["device"] == "cpu"
    assert sorted(os.listdir(out)) == ["perf.csv", "perf.json", "table.md"]   # no reservation left


def test_two_perfs_with_one_out_do_not_replace_each_others_files(monkeypatch, capsys, tmp_path):
    """Two perfs given the same --out, the second started while the first is timing: both found
    the directory empty at the start, and the one that finished last silently replaced the other's
    perf.json. Now the second stops at once with one line (and the first writes its files)."""
    out = str(tmp_path / "shared")
    rows = [_row("floor", "newton", 1.0), _row("optbench", "newton", 2.0)]
    inner = {}

    def first_run_perf(*a, **kw):
        monkeypatch.setattr(perf, "run_perf", _fake_run_perf([_row("floor", "newton", 7.0),
                                                               _row("optbench", "newton", 9.0)]))
        inner["rc"] = cli.main(["perf", "--quick", "--cases", "rosenbrock", "--out", out])
        inner["err"] = capsys.readouterr().err
        return _fake_run_perf(rows)(*a, **kw)

    monkeypatch.setattr(perf, "run_perf", first_run_perf)
    assert cli.main(["perf", "--quick", "--cases", "rosenbrock", "--out", out]) == 0
    assert inner["rc"] == 2, inner
    assert inner["err"].count("\n") == 1 and "another optbench perf is writing there" in inner["err"]
    doc = json.loads(open(os.path.join(out, "perf.json")).read())
    assert [r["median_ms"] for r in doc["rows"]] == [1.0, 2.0]
    assert sorted(os.listdir(out)) == ["perf.csv", "perf.json", "table.md"]


def test_two_perfs_started_in_one_second_get_two_directories(monkeypatch, tmp_path):
    """The default directory is results/perf/<UTC second>: picked, but not taken, so a second perf
    started in the same second picked the same one, found it empty and later replaced the first's
    files."""
    monkeypatch.chdir(tmp_path)
    import datetime as dt
    fixed = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    fake = types.SimpleNamespace(datetime=types.SimpleNamespace(now=lambda tz=None: fixed), timezone=dt.timezone)
    from bench import store
    monkeypatch.setattr(store, "_dt", fake)   # the clock of the name's claim (store.default_run_dir)
    got = cmd_perf._default_dir()
    first = got[0] if isinstance(got, tuple) else got
    got = cmd_perf._default_dir()
    second = got[0] if isinstance(got, tuple) else got
    assert first != second
    assert os.path.basename(first) == "20260102-030405" and os.path.basename(second) == "20260102-030405-2"


def test_compiles_stay_cold_with_a_cache_directory_in_the_environment(tmp_path):
    """README: compile columns are cold compiles for everyone unless --warm-cache. With
    JAX_COMPILATION_CACHE_DIR set, JAX's persistent cache still stored (and on the next run
    served) every contender's compile. A fresh process, as the command runs: nothing may be
    written to that directory."""
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cache = tmp_path / "jax-cache"
    env = dict(os.environ, PYTHONPATH=root, JAX_COMPILATION_CACHE_DIR=str(cache),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    out = subprocess.run([sys.executable, "-m", "bench", "perf", "--quick", "--cases", "linreg", "--repeats", "1",
                          "--no-write"], cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "optbench gd (blocked f)" in out.stdout
    assert not cache.exists() or not any(cache.iterdir()), sorted(p.name for p in cache.iterdir())


# -- from a second audit of perf ------------------------------------------------------------------------

def test_perf_json_records_xla_flags_cpu_model_and_the_rounds_rule(monkeypatch, capsys, tmp_path):
    """XLA_FLAGS, which can move a floor from 5.3 to 3.1 ms, and the processor were not recorded;
    config.repeats said 5 where the adaptive rule ran up to 41 rounds, and the cap was nowhere."""
    monkeypatch.setattr(perf, "run_perf", _fake_run_perf([_row("floor", "newton", 1.0),
                                                           _row("optbench", "newton", 2.0)]))
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_enable_fast_math=false")
    out = tmp_path / "p"
    assert cli.main(["perf", "--cases", "rosenbrock", "--methods", "newton", "--out", str(out)]) == 0
    capsys.readouterr()
    meta = json.loads((out / "perf.json").read_text())["meta"]
    assert meta["xla_flags"] == "--xla_cpu_enable_fast_math=false"
    assert "cpu_model" in meta
    assert (meta["config"]["repeats"], meta["config"]["max_repeats"]) == (perf.DEFAULT["repeats"],
                                                                          perf.DEFAULT["max_repeats"])


def test_growth_is_marked_where_a_size_was_not_solved_everywhere():
    """The README marks every ratio that involves a contender that did not solve every start;
    growth never was."""
    small, big = _row("optbench", "newton", 1.0), _row("optbench", "newton", 12.0, solved=0.9)
    small["size"], big["size"] = 1000, 10000
    rows = [small, big]
    perf.add_growth(rows)
    assert big["growth"] == 12.0 and "growth" in big["flagged"]
    assert perf.FLAG_MARK in perf.format_table(rows)


def test_no_write_with_out_is_refused(monkeypatch, capsys, tmp_path):
    """`--no-write --out DIR` printed the table, wrote nothing and said nothing of --out."""
    _no_timing(monkeypatch)
    assert cli.main(["perf", "--quick", "--no-write", "--out", str(tmp_path / "p")]) == 2
    _one_line_error(capsys, "--no-write writes nothing")


def test_warm_cache_turns_the_cache_on_before_the_first_compile(monkeypatch, capsys, tmp_path):
    """The floor kernels compile before the first solve(), which is what turned the persistent
    cache on: under --warm-cache their compile column stayed cold."""
    import sys
    bsolve = sys.modules["bench.solve"]
    seen = {}

    def run_perf(*a, **kw):
        seen["cache_dir"] = jax.config.jax_compilation_cache_dir
        return _fake_run_perf([_row("floor", "newton", 1.0), _row("optbench", "newton", 2.0)])(*a, **kw)
    monkeypatch.setattr(perf, "run_perf", run_perf)
    monkeypatch.setenv("OPTBENCH_CACHE_DIR", str(tmp_path / "cache"))
    # as in a fresh process: nothing configured yet
    monkeypatch.setitem(bsolve._CACHE, "configured", False)
    monkeypatch.setitem(bsolve._CACHE, "dir", None)
    saved = jax.config.jax_compilation_cache_dir
    jax.config.update("jax_compilation_cache_dir", None)
    try:
        assert cli.main(["perf", "--quick", "--cases", "rosenbrock", "--warm-cache", "--no-write"]) == 0
    finally:
        jax.config.update("jax_compilation_cache_dir", saved)
    capsys.readouterr()
    assert seen["cache_dir"] and str(tmp_path / "cache") in seen["cache_dir"]

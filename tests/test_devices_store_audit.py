"""Several devices and the files of a run, checked against what the README promises.

Sharding (README, *Several devices*): ``bench.solve`` on four forced host CPU devices against one
device — batch sizes that are not a multiple of the device count (1 and 5 starts), a single
start of shape (n,), ``pack=True``, ``history=False``, repeats — and every form ``--device``
takes. All of it runs in ONE child process (``XLA_FLAGS`` must be set before JAX starts), which
prints a JSON document the tests below read. Multi-process: two processes of two devices each.

Result format (README, *Result format*): what a run directory holds is read back and compared
with independent sources (numpy medians of the stored arrays, the installed versions, git
itself); a column nobody reads does not make a run unreadable; provenance that would be untrue
(an enclosing repository's commit, a modified tree, ``python -m bench``'s argv[0]) is not written.
"""
import csv
import datetime as _dt
import errno
import importlib.metadata
import json
import os
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest

from bench import store
from bench.cli import main
from optbench_core import OptbenchError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_ITER = 60

#: the child: four host CPU devices, every check that needs them, one JSON document at the end
_FOUR_DEVICES = r"""
import contextlib, io, json, os, runpy, sys
import numpy as np
import jax
import bench, problems
from bench import cli, store
from bench.solve import resolve_devices
from optbench_core import OptbenchError

out = {"devices": len(jax.devices("cpu"))}
try:
    out["gpus"] = len(jax.devices("gpu"))
except RuntimeError:
    out["gpus"] = 0
forms = {}
for form in ["cpu", "CPU", "cpu:0", "cpu:3", "cpu:4", "cpu:0,2", "all", "cpu:", "cpu:\u00b2", "cpu:\u0663",
             "cpu:-1", "tpu", "gpu", "gpu:0", None, ""]:
    try:
        forms[repr(form)] = [d.id for d in resolve_devices(form)]
    except OptbenchError as exc:
        forms[repr(form)] = "error: " + str(exc)
    except Exception as exc:
        forms[repr(form)] = f"crash: {type(exc).__name__}: {exc}"
out["forms"] = forms

p = problems.get("rosenbrock")
MAX_ITER = int(sys.argv[2])


def outcome(r):
    return {"x": r.x.tolist(), "nit": r.nit.tolist(), "status": r.status.tolist(),
            "counts": [getattr(r, k).tolist() for k in ("nfev", "njev", "nhev", "nhvp")],
            "f": None if r.trace is None else r.trace.f.tolist(),
            "trace_shapes": None if r.trace is None else {k: list(v.shape) for k, v in r.trace.arrays().items()},
            "recorded": None if r.trace is None else list(r.trace.recorded()["f"].shape),
            "iterations_run": r.iterations_run, "packed_at": r.packed_at}


cases = {}
for name, opt, b, kw in [("newton-1", "newton", 1, {}), ("newton-5", "newton", 5, {}), ("bfgs-5", "bfgs", 5, {}),
                         ("newton-5-pack", "newton", 5, {"pack": True}),
                         ("newton-5-nohist", "newton", 5, {"history": False}),
                         ("newton-5-repeats", "newton", 5, {"repeats": 3})]:
    x0s = p.random_starts(b, 0)
    four = bench.solve(p, opt, x0s, max_iter=MAX_ITER, device="cpu", **kw)
    one = bench.solve(p, opt, x0s, max_iter=MAX_ITER, device="cpu:0", **kw)
    cases[name] = {"four": outcome(four), "one": outcome(one)}
single4 = bench.solve(p, "newton", p.x0, max_iter=MAX_ITER, device="cpu")
single1 = bench.solve(p, "newton", p.x0, max_iter=MAX_ITER, device="cpu:0")
cases["single"] = {"four": {"x": single4.x.tolist(), "nit": int(single4.nit), "f": single4.trace.f.tolist(),
                            "shape": list(single4.trace.f.shape)},
                   "one": {"x": single1.x.tolist(), "nit": int(single1.nit), "f": single1.trace.f.tolist()}}
out["cases"] = cases

# the command line, started as `python -m bench` would start it
base = sys.argv[1]
args = ["run", "--problems", "rosenbrock", "--optimizers", "newton", "--starts", "3", "--max-iter", str(MAX_ITER),
        "--repeats", "1", "--no-plots", "--quiet"]
runs = {}
for label, extra in [("all", ["--device", "cpu"]), ("picked", ["--device", "cpu:2"]), ("one-start", ["--starts", "1"])]:
    sys.argv = ["-m"] + args + extra + ["--out", os.path.join(base, label)]
    try:
        runpy.run_module("bench", run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        runs[label] = exc.code
out["runs"] = runs
errors = {}
for form in ["cpu:\u00b2", "cpu:", "cpu:0,2", "all", "cpu:4", "tpu"]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = cli.main(args + ["--device", form, "--out", os.path.join(base, "never")])
    errors[form] = [rc, err.getvalue(), os.path.exists(os.path.join(base, "never"))]
out["cli_errors"] = errors
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def four(tmp_path_factory):
    base = tmp_path_factory.mktemp("four_devices")
    env = dict(os.environ, PYTHONPATH=ROOT, XLA_FLAGS="--xla_force_host_platform_device_count=4",
               OPTBENCH_CACHE_DIR="off")
    p = subprocess.run([sys.executable, "-c", _FOUR_DEVICES, str(base), str(MAX_ITER)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    doc = json.loads(p.stdout.strip().splitlines()[-1])
    assert doc["devices"] == 4
    doc["base"] = str(base)
    return doc


# -- --device and bench.solve(device=...) -----------------------------------------------------------
def test_every_device_form_names_the_devices_or_is_one_line(four):
    forms = four["forms"]
    assert forms["'cpu'"] == forms["'CPU'"] == [0, 1, 2, 3]
    if not four["gpus"]:   # no device named: JAX's default backend's devices
        assert forms["None"] == forms["''"] == [0, 1, 2, 3]
    assert forms["'cpu:0'"] == [0] and forms["'cpu:3'"] == [3]
    assert forms["'cpu:4'"] == "error: device 'cpu:4' does not exist: 4 cpu device(s) visible"
    # lists of devices, 'all', a missing N, a negative N, N in digits that are not 0-9 ('²' made
    # int() fail: an internal error; '٣' meant device 3; 'cpu:' meant every CPU device)
    for form in ("'cpu:0,2'", "'all'", "'cpu:'", "'cpu:-1'", "'tpu'", repr("cpu:\u00b2"), repr("cpu:\u0663")):
        assert forms[form].startswith("error: unknown device ") and forms[form].endswith(
            "use cpu, gpu, cpu:N or gpu:N"), (form, forms[form])
    for form in ("'gpu'", "'gpu:0'"):
        if not four["gpus"]:
            assert forms[form] == "error: no gpu device is visible to JAX on this machine; run with --device cpu"


def test_bad_device_on_the_command_line_is_one_line_exit_2_nothing_written(four):
    for form, (rc, err, written) in four["cli_errors"].items():
        assert rc == 2 and err.startswith("optbench: error: ") and err.count("\n") == 1, (form, rc, err)
        assert "internal error" not in err and not written, (form, err)


def test_no_cpu_device_suggests_the_other_kind(monkeypatch):
    """``JAX_PLATFORMS=cuda`` hides the CPU: the line said "run with --device cpu" for the very
    kind that is missing."""
    import jax
    from bench.solve import resolve_devices

    def devices(backend=None):
        if backend == "cpu":
            raise RuntimeError("Unknown backend cpu")
        return real(backend)
    real = jax.devices
    monkeypatch.setattr(jax, "devices", devices)
    with pytest.raises(OptbenchError, match=r"^no cpu device is visible to JAX on this machine; "
                                            r"run with --device gpu$"):
        resolve_devices("cpu:0")


def test_one_device_of_a_multi_process_run_is_refused_up_front(monkeypatch):
    """In a two-process run ``cpu:N`` leaves the other process without a share: process 0 died in
    jax.make_array_from_callback (ValueError) and process 1 in a collective that timed out after
    30 s (JaxRuntimeError), both internal errors. Now one line, before anything runs."""
    import jax
    from bench.solve import resolve_devices
    monkeypatch.setattr(jax, "process_count", lambda: 2)
    with pytest.raises(OptbenchError, match=r"device 'cpu:0' is one device, but this run spans 2 processes.*"
                                            r"use --device cpu$"):
        resolve_devices("cpu:0")
    assert resolve_devices("cpu") == list(jax.devices("cpu"))   # every device of the kind is fine


# -- sharded results against one device ------------------------------------------------------------
def _close(a, b, rtol=1e-9):
    a, b = np.asarray(a, float), np.asarray(b, float)
    scale = np.maximum(np.abs(b), 1e-300)
    return a.shape == b.shape and bool(np.all((a == b) | (np.abs(a - b) <= rtol * scale + 1e-14)))


@pytest.mark.parametrize("case, b", [("newton-1", 1), ("newton-5", 5), ("bfgs-5", 5), ("newton-5-pack", 5),
                                     ("newton-5-repeats", 5)])
def test_sharded_batch_equals_one_device(four, case, b):
    """Batches padded to a multiple of four (1 → 4, one start per device; 5 → 8): the same
    iterations, statuses and evaluation counts as one device, x and the history to rounding
    (README: XLA's code may differ with the per-device batch size), and every array shaped by
    the starts asked for, not the padded batch. (Bit for bit at 10 starts: test_perf.py.)"""
    four_, one = four["cases"][case]["four"], four["cases"][case]["one"]
    assert four_["nit"] == one["nit"] and four_["status"] == one["status"] and four_["counts"] == one["counts"]
    assert len(four_["nit"]) == b and np.shape(four_["x"]) == (b, 2)
    assert _close(four_["x"], one["x"], 1e-10), case
    assert _close(four_["f"], one["f"]), case
    shapes = four_["trace_shapes"]
    assert shapes == one["trace_shapes"]
    assert all(s[:2] == [b, MAX_ITER + 1] for s in shapes.values()) and shapes["x"] == [b, MAX_ITER + 1, 2]
    assert four_["recorded"] == [b, four_["iterations_run"] + 1] and four_["iterations_run"] == max(four_["nit"])
    assert four_["packed_at"] is None


def test_pack_on_several_devices_is_the_plain_run_and_history_false_the_same_results(four):
    """README: packing is for one device; on four, pack=True runs the plain loop (same results
    bit for bit, never packed). history=False: the same final results as with the history."""
    plain, packed = four["cases"]["newton-5"]["four"], four["cases"]["newton-5-pack"]["four"]
    assert packed["x"] == plain["x"] and packed["f"] == plain["f"] and packed["packed_at"] is None
    bare = four["cases"]["newton-5-nohist"]
    assert bare["four"]["f"] is None and bare["four"]["trace_shapes"] is None
    for k in ("x", "nit", "status", "counts"):
        assert bare["four"][k] == plain[k] and bare["one"][k] == four["cases"]["newton-5"]["one"][k], k


def test_single_start_on_several_devices_is_unbatched(four):
    s = four["cases"]["single"]
    assert np.shape(s["four"]["x"]) == (2,) and s["four"]["shape"] == [MAX_ITER + 1]
    assert s["four"]["nit"] == s["one"]["nit"] and _close(s["four"]["x"], s["one"]["x"], 1e-10)
    assert _close(s["four"]["f"], s["one"]["f"])


# -- the run directory of a sharded run ------------------------------------------------------------
def test_meta_reports_the_devices_the_run_used(four):
    base = four["base"]
    assert four["runs"] == {"all": 0, "picked": 0, "one-start": 0}
    metas = {k: store.load_run(os.path.join(base, k)).meta for k in four["runs"]}
    for label, count, device in (("all", 4, "cpu"), ("picked", 1, "cpu:2"), ("one-start", 4, "cpu")):
        m = metas[label]
        assert m["complete"] is True and m["backend"] == "cpu" and m["device_kind"] == "cpu"
        assert m["device_count"] == count and m["process_count"] == 1 and m["config"]["device"] == device, label
        assert m["cpu_threads"] is not None and m["x64"] is True and m["dtype"] == "float64"
        # started as `python -m bench`: the command says so (it said "__main__.py run ...")
        assert m["command"].startswith("python -m bench run --problems rosenbrock"), m["command"]
        assert m["argv"][0] == "run" and m["command"].endswith(" ".join(m["argv"]))


def test_sharded_run_files_equal_a_one_device_run(four, tmp_path):
    """The same cell run here, in a one-device process: the same starts.csv text (iterations,
    statuses, counts; f to the digits written) and trace files of (starts, max_iter + 1)."""
    one = str(tmp_path / "one")
    assert main(["run", "--problems", "rosenbrock", "--optimizers", "newton", "--starts", "3", "--max-iter",
                 str(MAX_ITER), "--repeats", "1", "--no-plots", "--quiet", "--out", one]) == 0
    r1 = store.load_run(one)
    for label, b in (("all", 3), ("picked", 3), ("one-start", 1)):
        rk = store.load_run(os.path.join(four["base"], label))
        cell = rk.cell("rosenbrock", "newton")
        assert cell["trace_f"].shape == (b, MAX_ITER + 1) and cell["trace_x"].shape == (b, MAX_ITER + 1, 2)
        assert cell["x0"].shape == cell["x"].shape == (b, 2) and len(rk.starts) == b
        ref = r1.starts[:b]
        for got, want in zip(rk.starts, ref):
            for k in ("start", "status", "success", "nit", "nfev", "njev", "nhev", "nhvp"):
                assert got[k] == want[k], (label, k)
            assert got["f_final"] == pytest.approx(want["f_final"], rel=1e-9, abs=1e-25)


# -- two processes ---------------------------------------------------------------------------------
_TWO_PROCESSES = r"""
import json, sys
from bench.solve import init_distributed, resolve_devices
init_distributed()
init_distributed()   # joined already: nothing to do (JAX refused a second join)
import jax, numpy as np, bench, problems
from optbench_core import OptbenchError
out = {"process": jax.process_index(), "devices": len(jax.devices())}
try:
    resolve_devices("cpu:0")
    out["picked"] = "accepted"
except OptbenchError as exc:
    out["picked"] = str(exc)
p = problems.get("rosenbrock")
r = bench.solve(p, "newton", p.random_starts(1, 3), max_iter=40)   # one start, four devices
out.update(x=r.x.tolist(), nit=r.nit.tolist(), f=r.trace.f.tolist())
print(json.dumps(out))
"""


def test_two_processes_refuse_one_device_and_share_a_single_start(tmp_path):
    """A two-process run (two CPU devices each): ``cpu:0`` is one line in both processes, and
    one start padded over four devices in two processes (process 1 holds only padding) comes
    back to both, equal to a one-device run to rounding."""
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        port = sock.getsockname()[1]
    env = dict(os.environ, PYTHONPATH=ROOT, XLA_FLAGS="--xla_force_host_platform_device_count=2",
               OPTBENCH_CACHE_DIR="off", OPTBENCH_COORDINATOR=f"localhost:{port}", OPTBENCH_NUM_PROCESSES="2")
    procs = [subprocess.Popen([sys.executable, "-c", _TWO_PROCESSES], cwd=ROOT,
                              env=dict(env, OPTBENCH_PROCESS_ID=str(i)), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    try:
        outs = [pr.communicate(timeout=300) for pr in procs]
    finally:
        for pr in procs:
            pr.kill()
    import bench
    import problems
    p = problems.get("rosenbrock")
    ref = bench.solve(p, "newton", p.random_starts(1, 3), max_iter=40)
    for i, (pr, (so, se)) in enumerate(zip(procs, outs)):
        assert pr.returncode == 0, se[-3000:]
        doc = json.loads(so.strip().splitlines()[-1])
        assert doc["process"] == i and doc["devices"] == 4
        assert doc["picked"] == ("device 'cpu:0' is one device, but this run spans 2 processes, each of which "
                                 "computes a share of the starts: use --device cpu")
        assert doc["nit"] == ref.nit.tolist() and _close(doc["x"], ref.x, 1e-10) and _close(doc["f"], ref.trace.f)


# -- the result format -----------------------------------------------------------------------------
def _git(*args, cwd):
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def test_run_files_read_back_as_the_readme_describes(tiny_run):
    """summary.csv and starts.csv hold exactly the README's columns, parse back to the values of
    the trace file (medians by numpy; the statuses counted), and the traces are (starts,
    max_iter + 1) with x for n ≤ 3."""
    run = store.load_run(tiny_run)
    with open(os.path.join(tiny_run, "summary.csv"), newline="") as fh:
        assert next(csv.reader(fh)) == ("problem, optimizer, dim, starts, success_rate, nit_median, nfev_median, "
                                        "njev_median, nhev_median, nhvp_median, f_final_median, subopt_median, "
                                        "grad_norm_median, f_star, statuses, compile_s, run_s, dtype, "
                                        "trace_file").split(", ")
    with open(os.path.join(tiny_run, "starts.csv"), newline="") as fh:
        assert next(csv.reader(fh)) == ("problem, optimizer, start, status, success, nit, nfev, njev, nhev, nhvp, "
                                        "f_final, grad_norm_final, subopt").split(", ")
    (row,) = run.summary
    cell = run.cell(row["problem"], row["optimizer"])
    b, max_iter = row["starts"], run.meta["config"]["max_iter"]
    for key in ("f", "grad_norm", "nfev", "njev", "nhev", "nhvp", "step", "rho"):
        assert cell[f"trace_{key}"].shape == (b, max_iter + 1), key
    assert cell["trace_x"].shape == (b, max_iter + 1, 2) and cell["x0"].shape == (b, 2)
    assert row["nit_median"] == float(np.median(cell["nit"])) and row["nfev_median"] == float(np.median(cell["nfev"]))
    assert row["f_final_median"] == float(np.median(cell["fun"]))
    assert row["subopt_median"] == float(np.median(cell["fun"] - float(cell["f_star"])))
    assert row["success_rate"] == float(np.mean(cell["success"]))
    st, n = np.unique(cell["status"], return_counts=True)
    assert row["statuses"] == ";".join(f"{s}={c}" for s, c in zip(st, n))
    assert row["trace_file"].startswith("traces/") and row["dtype"] == "float64"
    assert row["run_s"] == pytest.approx(float(np.median(cell["run_s_all"])))
    assert [r["start"] for r in run.starts] == list(range(b))
    for r, i in zip(run.starts, range(b)):
        assert (r["status"], r["success"], r["nit"], r["nfev"]) == (str(cell["status"][i]), bool(cell["success"][i]),
                                                                     int(cell["nit"][i]), int(cell["nfev"][i]))
        assert r["f_final"] == float(cell["fun"][i]) and r["grad_norm_final"] == float(cell["grad_norm"][i])


def test_meta_provenance_is_true(tiny_run):
    """Each provenance field against an independent source: installed versions, the host, the
    CPU count, the settings, the git commit and whether the tree differs from it (``git_dirty``:
    a run from a modified tree recorded the commit as if it had run that commit's code)."""
    m = store.load_run(tiny_run).meta
    for name in ("jax", "jaxlib", "optax", "numpy", "matplotlib"):
        assert m["versions"][name] == importlib.metadata.version(name), name
    # scipy's version too (scipy: cells run its code; it was not recorded): null where not installed
    try:
        scipy_version = importlib.metadata.version("scipy")
    except importlib.metadata.PackageNotFoundError:
        scipy_version = None
    assert "scipy" in m["versions"] and m["versions"]["scipy"] == scipy_version
    assert m["versions"]["python"] == ".".join(map(str, sys.version_info[:3]))
    assert m["host"] == socket.gethostname() and m["cpu_count"] == os.cpu_count() and m["process_count"] == 1
    assert m["backend"] == "cpu" and m["x64"] is True and m["schema_version"] == store.SCHEMA_VERSION
    created = _dt.datetime.fromisoformat(m["created"])
    assert created.tzinfo is not None and abs((_dt.datetime.now(_dt.timezone.utc) - created).days) < 1
    assert m["wall_s"] > 0 and m["cells_done"] == [["himmelblau", "newton"]]
    cfg = m["config"]
    assert (cfg["starts"], cfg["seeds"], cfg["max_iter"], cfg["dtype"]) == (4, [0], 200, "float64")
    if shutil.which("git") and os.path.isdir(os.path.join(ROOT, ".git")):
        assert m["git_commit"] == _git("rev-parse", "HEAD", cwd=ROOT)
        dirty = bool(_git("status", "--porcelain", "--untracked-files=no", cwd=ROOT))
        assert m["git_dirty"] is dirty


@needs_git
def test_git_commit_is_only_the_repository_that_tracks_the_source(tmp_path):
    """An installed optbench in a virtual environment inside another project's checkout
    (``.venv/`` ignored): ``git rev-parse HEAD`` there answers that project's commit, which the
    run recorded as optbench's. A tracked tree gets its commit, and a change to a tracked file
    is recorded as ``git_dirty``."""
    repo = tmp_path / "project"
    site = repo / ".venv" / "lib" / "site-packages"
    site.mkdir(parents=True)
    (repo / ".gitignore").write_text(".venv/\n")
    (repo / "code.py").write_text("x = 1\n")
    _git("init", "-q", cwd=repo)
    _git("add", ".", cwd=repo)
    _git("-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-qm", "one", cwd=repo)
    head = _git("rev-parse", "HEAD", cwd=repo)
    assert store.git_commit(str(site)) is None and store.git_dirty(str(site)) is None
    assert store.git_commit(str(repo)) == head and store.git_dirty(str(repo)) is False
    (repo / "code.py").write_text("x = 2\n")
    assert store.git_commit(str(repo)) == head and store.git_dirty(str(repo)) is True
    (repo / "code.py").write_text("x = 1\n")
    (repo / "new.py").write_text("untracked\n")   # an untracked file is not a change to the commit
    assert store.git_dirty(str(repo)) is False
    assert store.git_commit(str(tmp_path / "nowhere")) is None


def test_command_line_of_python_m_bench(monkeypatch):
    monkeypatch.setattr(sys, "argv", [os.path.join(ROOT, "bench", "__main__.py"), "run", "--quiet"])
    assert store.command_line() == "python -m bench run --quiet"
    monkeypatch.setattr(sys, "argv", ["/usr/local/bin/optbench", "run", "--starts", "3"])
    assert store.command_line() == "optbench run --starts 3"


def _add_column(path, name, value):
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    rows[0].append(name)
    for r in rows[1:]:
        r.append(value)
    with open(path, "w", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows(rows)


def test_a_run_with_columns_and_fields_it_does_not_know_still_loads(tiny_run, tmp_path, capsys):
    """A column added by hand (or by a later optbench) that nobody reads: the run loaded with
    "column 'note' holds 'checked by hand', not a number" and every command refused it. Kept now
    (as text, or a number where it reads as one); a known column that is not a number is still
    refused, and so is meta.json without its required keys."""
    d = str(tmp_path / "run")
    shutil.copytree(tiny_run, d)
    _add_column(os.path.join(d, "summary.csv"), "note", "checked by hand")
    _add_column(os.path.join(d, "starts.csv"), "weight", "2.5")
    meta = json.load(open(os.path.join(d, "meta.json")))
    meta["future_field"] = {"anything": [1, 2]}
    json.dump(meta, open(os.path.join(d, "meta.json"), "w"))
    run = store.load_run(d)
    assert run.summary[0]["note"] == "checked by hand" and all(r["weight"] == 2.5 for r in run.starts)
    assert run.summary[0]["nit_median"] == store.load_run(tiny_run).summary[0]["nit_median"]
    assert main(["report", d, "--out", str(tmp_path / "r.html")]) == 0
    assert main(["baseline", d, "--out", str(tmp_path / "b.json")]) == 0
    capsys.readouterr()
    # a known column is still checked
    _add_column(os.path.join(d, "starts.csv"), "nit", "x")   # a second 'nit' header: DictReader keeps the last
    with pytest.raises(OptbenchError, match="column 'nit' holds 'x', not a number"):
        store.load_run(d)
    # meta.json with only the required keys: a run (with its cells), nothing more needed to load
    shutil.rmtree(d)
    shutil.copytree(tiny_run, d)
    json.dump({k: meta[k] for k in store.RUN_META_KEYS}, open(os.path.join(d, "meta.json"), "w"))
    assert len(store.load_run(d).summary) == 1
    json.dump({k: meta[k] for k in ("schema_version", "complete")}, open(os.path.join(d, "meta.json"), "w"))
    with pytest.raises(OptbenchError, match=r"lacks 'cells_done'"):
        store.load_run(d)


def test_runs_started_in_one_second_without_out_get_directories_of_their_own(tmp_path, monkeypatch):
    """default_run_dir only looked for a free name: three `optbench run` started together without
    --out picked results/runs/<the same second>, and two stopped with "run directory … is locked
    by optbench process …" (exit 2). Now each name is taken with os.mkdir as it is handed out,
    and a run that fails before its first cell removes the directory made for it."""
    class Frozen(_dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return _dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=tz)
    monkeypatch.setattr(store, "_dt", type("dt", (), {"datetime": Frozen, "timezone": _dt.timezone}))
    root = str(tmp_path / "results" / "runs")
    paths = [store.default_run_dir(root) for _ in range(3)]
    assert [os.path.basename(p) for p in paths] == ["20260102-030405", "20260102-030405-2", "20260102-030405-3"]
    assert all(os.path.isdir(p) and not os.listdir(p) for p in paths)
    store.RunWriter(paths[0], {"config": {}}).discard()   # failed before its first cell
    assert not os.path.exists(paths[0])
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    with pytest.raises(OptbenchError, match="cannot create the directory"):
        store.default_run_dir(str(blocked / "runs"))


@pytest.mark.parametrize("made_by_user", [False, True])
def test_a_run_failing_at_its_first_cell_leaves_nothing_behind(tmp_path, monkeypatch, capsys, made_by_user):
    """The disk fills while the first cell is written (its trace and summary.csv are in,
    starts.csv fails): the run left summary.csv and the trace without meta.json, a directory
    that --resume and the next run into it refused as "not a run". Into an empty --out the user
    made, a failed start left meta.json and traces/, and the next run was refused as "already a
    run". Now the directory goes (or, the user's, is left empty) and the same command works."""
    out = tmp_path / "run"
    if made_by_user:
        out.mkdir()
    real, calls = os.fsync, []

    def fsync(fd):   # meta.json, then the first cell's trace, summary.csv, starts.csv: that one fails
        calls.append(fd)
        if len(calls) == 4:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd)
    args = ["run", "--problems", "himmelblau", "--optimizers", "newton", "--starts", "4", "--max-iter", "200",
            "--repeats", "1", "--out", str(out), "--quiet", "--no-plots"]
    monkeypatch.setattr(os, "fsync", fsync)
    assert main(args) == 2
    assert "starts.csv: cannot write (No space left on device)" in capsys.readouterr().err
    assert (sorted(os.listdir(out)) == []) if made_by_user else not out.exists()
    monkeypatch.setattr(os, "fsync", real)
    assert main(args) == 0
    assert store.load_run(str(out)).meta["complete"] is True


def test_the_csvs_written_cell_by_cell_equal_a_full_rewrite():
    """RunDir rewrites summary.csv and starts.csv after each cell, formatting each cell's rows
    once (bench.store._cells_csv_text): at every step, with a cell run again (its rows replaced
    by new ones, moved to the end) and a value that formats with quotes, the text equals the
    plain full rewrite."""
    from bench import store as st
    rows, cache = [], {}
    for k in range(12):
        rows += [{"problem": f"p{k % 4}", "optimizer": f"o{k}", "start": i, "f_final": 0.1 * k + i,
                  "status": "converged" if i else "max_iter, then more", "x0": [1.5, -2.0]} for i in range(3)]
        if k == 7:   # cell p1 × o5 run again: new row objects, same cell, at the end
            rows = [r for r in rows if (r["problem"], r["optimizer"]) != ("p1", "o5")]
            rows += [{"problem": "p1", "optimizer": "o5", "start": i, "f_final": 9.0 + i, "status": "stalled",
                      "x0": None} for i in range(3)]
        cols = ["problem", "optimizer", "start", "f_final", "status", "x0"]
        assert st._cells_csv_text(cols, rows, cache) == st._csv_text(cols, rows)
    assert "9.0" in st._cells_csv_text(cols, rows, cache) and '"max_iter, then more"' in st._csv_text(cols, rows)

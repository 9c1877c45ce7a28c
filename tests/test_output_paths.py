"""Where plot, report, compare and perf write: a read-only run directory, an unwritable or
impossible destination, a full disk and a problem name too long for a file name each end in one
line (exit 2) or succeed, never in an internal error, and leave no temporary or half-written file.

Paths under a regular file (``<file>/sub``) fail for every user, root included; the tests that
need a read-only directory (``chmod``) are skipped as root, who may write anywhere.
"""
import errno
import os
import shutil
import warnings

import pytest

from bench import perf, plots, store
from optbench_core import OptbenchError
from bench.cli import main
from conftest import dir_snapshot

AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
needs_non_root = pytest.mark.skipif(AS_ROOT, reason="root writes into read-only directories")


def _copy(run_dir, tmp_path, name="run"):
    dst = str(tmp_path / name)
    shutil.copytree(run_dir, dst)
    return dst


_snapshot = dir_snapshot


def _one_line_error(capsys, *needles):
    err = capsys.readouterr().err
    assert err.startswith("optbench: error: ") and err.count("\n") == 1, err
    assert "internal error" not in err and "Traceback" not in err
    for n in needles:
        assert n in err, (n, err)
    return err


def _a_file(tmp_path):
    path = tmp_path / "a-file"
    path.write_text("keep me\n")
    return str(path)


@pytest.fixture(scope="module")
def diverged_run(tmp_path_factory):
    """A run whose every start diverges (gradient descent with a huge step), without figures."""
    out = str(tmp_path_factory.mktemp("diverged") / "run")
    rc = main(["run", "--problems", "rosenbrock", "--optimizers", "gd:lr=10", "--starts", "3",
               "--max-iter", "50", "--repeats", "1", "--out", out, "--quiet", "--no-plots"])
    assert rc == 0
    assert all(float(r["success_rate"]) == 0.0 for r in store.load_run(out).summary)
    return out


# -- 1. a read-only run directory ----------------------------------------------------------------

def test_report_elsewhere_only_reads_the_run_directory(tiny_run, tmp_path, capsys):
    """The report embeds its figures: drawn in memory, they need no writable RUN/plots, and the
    run directory is left exactly as it was (here without plots/, which is not recreated)."""
    copy = _copy(tiny_run, tmp_path)
    shutil.rmtree(os.path.join(copy, "plots"))
    before = _snapshot(copy)
    out = str(tmp_path / "elsewhere" / "r.html")
    assert main(["report", copy, "--out", out]) == 0
    assert out in capsys.readouterr().out
    assert _snapshot(copy) == before and not os.path.exists(os.path.join(copy, "plots"))
    with open(out, encoding="utf-8") as fh:
        assert fh.read().count("<img") == 5  # convergence, trajectories, three profiles


@needs_non_root
def test_report_and_plot_on_a_read_only_run(tiny_run, tmp_path, capsys):
    copy = _copy(tiny_run, tmp_path)
    before = _snapshot(copy)
    for root, dirs, files in os.walk(copy):
        for n in dirs + files:
            os.chmod(os.path.join(root, n), 0o555 if n in dirs else 0o444)
    os.chmod(copy, 0o555)
    try:
        out = str(tmp_path / "r.html")
        assert main(["report", copy, "--out", out]) == 0
        assert os.path.getsize(out) > 10_000
        capsys.readouterr()
        assert main(["plot", copy]) == 2
        _one_line_error(capsys, os.path.join(copy, "plots"))
        assert main(["report", copy]) == 2  # the default RUN_DIR/report.html cannot be written
        _one_line_error(capsys, copy)
    finally:
        for root, dirs, _files in os.walk(copy):
            os.chmod(root, 0o755)
    assert _snapshot(copy) == before


def test_plot_where_plots_cannot_be_a_directory(tiny_run, tmp_path, capsys):
    """RUN/plots is a regular file: one line naming it, and the file stays as it was."""
    copy = _copy(tiny_run, tmp_path)
    plots_dir = os.path.join(copy, "plots")
    shutil.rmtree(plots_dir)
    with open(plots_dir, "w") as fh:
        fh.write("not a directory\n")
    assert main(["plot", copy, "--formats", "png"]) == 2
    _one_line_error(capsys, plots_dir)
    with open(plots_dir) as fh:
        assert fh.read() == "not a directory\n"


# -- 2. unwritable destinations --------------------------------------------------------------------

def test_report_out_that_cannot_be_created(tiny_run, tmp_path, capsys):
    afile = _a_file(tmp_path)
    assert main(["report", tiny_run, "--out", os.path.join(afile, "sub", "x.html")]) == 2
    _one_line_error(capsys, os.path.join(afile, "sub"))
    assert open(afile).read() == "keep me\n"


def test_compare_out_that_cannot_be_created(tiny_run, tmp_path, capsys):
    other = _copy(tiny_run, tmp_path, "other")
    afile = _a_file(tmp_path)
    out = os.path.join(afile, "sub")
    assert main(["compare", tiny_run, other, "--out", out, "--formats", "png"]) == 2
    _one_line_error(capsys, out)
    assert open(afile).read() == "keep me\n"


@needs_non_root
def test_compare_out_in_a_read_only_directory(tiny_run, tmp_path, capsys):
    other = _copy(tiny_run, tmp_path, "other")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        assert main(["compare", tiny_run, other, "--out", str(locked / "cmp"), "--formats", "png"]) == 2
        _one_line_error(capsys, str(locked / "cmp"))
    finally:
        locked.chmod(0o755)
    assert os.listdir(locked) == []


# -- 3. problem specs too long for a file name -------------------------------------------------------

def test_long_problem_names_make_short_distinct_file_names(tiny_run, tmp_path):
    a = "quadratic:seed=" + "9" * 250
    b = "quadratic:seed=" + "9" * 249 + "8"
    na, nb = plots.safe_name(a), plots.safe_name(b)
    assert na != nb and max(len(na), len(nb)) <= 200  # with "trajectories_" and ".png.tmp<pid>": < 255
    assert na.startswith("quadratic_seed_999")
    assert plots.safe_name("rosenbrock:dim=10") == "rosenbrock_dim_10"  # short names as before
    # specs that differ only in characters a file name cannot hold get distinct names (they
    # used to share bowl_tag_a_b, and the second problem's figures replaced the first's)
    names = {plots.safe_name(s) for s in ("bowl:tag=a+b", "bowl:tag=a*b", "bowl:tag=a b", "bowl:tag=a_b")}
    assert len(names) == 4 and all(n.startswith("bowl_tag_a") for n in names)
    # a figure of such a problem is written (name, temporary and all within the file-name limit)
    run = store.load_run(tiny_run)
    series = plots.run_series(run, "himmelblau")
    out = str(tmp_path / "figs")
    paths = plots.plot_convergence(run, a, out, formats=("png",), series=series)
    assert [os.path.basename(p) for p in paths] == [f"convergence_{na}.png"]
    assert os.listdir(out) == [f"convergence_{na}.png"]


# -- 4. a full disk ---------------------------------------------------------------------------------

class _FullDisk:
    """A file opened for writing that takes a few bytes, then fails as a full disk does."""

    def __init__(self, path, mode="r", *a, **kw):
        self._fh = open(path, mode, *a, **kw)

    def write(self, data):
        self._fh.write(data[:100])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._fh.close()


def test_disk_full_while_drawing_keeps_the_figures_and_no_temporary(tiny_run, tmp_path, capsys, monkeypatch):
    copy = _copy(tiny_run, tmp_path)
    plots_dir = os.path.join(copy, "plots")
    before = _snapshot(plots_dir)
    # figures are written through store's atomic write; reading the run still works
    monkeypatch.setattr(store, "open", lambda path, mode="r", *a, **kw: (_FullDisk if "w" in mode else open)(
        path, mode, *a, **kw), raising=False)
    assert main(["plot", copy, "--formats", "png"]) == 2
    _one_line_error(capsys, plots_dir, os.strerror(errno.ENOSPC))
    assert _snapshot(plots_dir) == before  # no temporary left, every figure intact
    monkeypatch.undo()
    # the report draws in memory: a disk too full for figures still takes report.html

    def no_figure_files(path, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(plots, "_write_bytes", no_figure_files)
    out = str(tmp_path / "r.html")
    assert main(["report", copy, "--out", out]) == 0
    assert _snapshot(plots_dir) == before


# -- 5. perf checks --out before it times anything ---------------------------------------------------

def test_perf_bad_out_fails_before_timing(tmp_path, capsys, monkeypatch):
    def timed(*a, **kw):
        raise AssertionError("perf timed its cases before checking --out")

    monkeypatch.setattr(perf, "run_perf", timed)
    afile = _a_file(tmp_path)
    base = ["perf", "--quick", "--cases", "rosenbrock", "--methods", "newton", "--out"]
    assert main(base + [afile]) == 2
    _one_line_error(capsys, afile, "not a directory")
    assert main(base + [os.path.join(afile, "sub")]) == 2
    _one_line_error(capsys, os.path.join(afile, "sub"))
    assert open(afile).read() == "keep me\n"

    # a perf that fails while timing leaves no empty output directory behind
    def broken(*a, **kw):
        raise OptbenchError("a case failed")

    monkeypatch.setattr(perf, "run_perf", broken)
    assert main(base + [str(tmp_path / "new" / "perf")]) == 2
    _one_line_error(capsys, "a case failed")
    assert not (tmp_path / "new").exists()


@needs_non_root
def test_perf_out_in_a_read_only_directory(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(perf, "run_perf", lambda *a, **kw: pytest.fail("timed before checking --out"))
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        assert main(["perf", "--quick", "--cases", "rosenbrock", "--out", str(locked / "p")]) == 2
        _one_line_error(capsys, str(locked / "p"))
    finally:
        locked.chmod(0o755)


# -- 6. nothing labelled, no legend ------------------------------------------------------------------

def test_all_diverged_run_plots_without_legend_warnings(diverged_run, tmp_path, capsys):
    copy = _copy(diverged_run, tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["plot", copy, "--formats", "png"]) == 0
    messages = [str(w.message) for w in caught] + [capsys.readouterr().err]
    assert not [m for m in messages if "No artists with labels" in m], messages
    assert os.path.exists(os.path.join(copy, "plots", "convergence_rosenbrock.png"))


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
@pytest.mark.parametrize("cmd", ["baseline", "check", "report"])
def test_out_that_is_a_named_pipe_is_refused_not_replaced_nor_read(tiny_run, tmp_path, capsys, cmd):
    """`check --out PIPE` blocked forever reading the pipe to see whether it held an earlier
    report; `baseline --out PIPE` (and as root `--out /dev/null`, a device) replaced it with a
    regular file. Anything but a regular file is now refused, before anything is read from it."""
    fifo = str(tmp_path / "pipe")
    os.mkfifo(fifo)
    bl = str(tmp_path / "bl.json")
    assert main(["baseline", tiny_run, "--out", bl]) == 0
    capsys.readouterr()
    argv = {"baseline": ["baseline", tiny_run, "--out", fifo],
            "check": ["check", tiny_run, "--baseline", bl, "--out", fifo],
            "report": ["report", tiny_run, "--out", fifo]}[cmd]
    assert main(argv) == 2
    _one_line_error(capsys, fifo, "not a regular file")
    import stat
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symbolic links here")
def test_baseline_out_through_a_symbolic_link_updates_the_file_it_points_to(tiny_run, tmp_path, capsys):
    """The link was replaced by a file of its own and the shared baseline it pointed to kept its
    old contents, while the command said it replaced the baseline."""
    target = str(tmp_path / "shared.json")
    assert main(["baseline", tiny_run, "--out", target]) == 0
    before = open(target, "rb").read()
    link = str(tmp_path / "link.json")
    os.symlink(target, link)
    other = _copy(tiny_run, tmp_path, "other")
    with open(os.path.join(other, "meta.json"), encoding="utf-8") as fh:
        meta = fh.read()
    with open(os.path.join(other, "meta.json"), "w", encoding="utf-8") as fh:
        fh.write(meta.replace('"name": "tiny"', '"name": "other"'))
    assert main(["baseline", other, "--out", link]) == 0
    assert os.path.islink(link) and os.path.realpath(link) == os.path.realpath(target)
    after = open(target, "rb").read()
    assert after != before and b'"other"' in after


@pytest.mark.parametrize("into", ["", "plots"])
def test_compare_out_into_a_run_or_its_plots_is_refused(tiny_run, tmp_path, capsys, into):
    """`compare A B --out C/plots` replaced run C's own convergence figures with the comparison's
    (the same file names), without a word."""
    a = _copy(tiny_run, tmp_path, "a")
    b = _copy(tiny_run, tmp_path, "b")
    c = _copy(tiny_run, tmp_path, "c")
    os.makedirs(os.path.join(c, "plots"), exist_ok=True)
    with open(os.path.join(c, "plots", "convergence_himmelblau.png"), "wb") as fh:
        fh.write(b"run c's own figure")
    before = _snapshot(c)
    out = os.path.join(c, into) if into else c
    assert main(["compare", a, b, "--out", out, "--formats", "png"]) == 2
    _one_line_error(capsys, "is a run directory or its plots/")
    assert _snapshot(c) == before

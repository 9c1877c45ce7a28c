"""Trace files hold the recorded columns and the length they stand for (schema version 2); every
reader gets them padded to max_iter + 1, exactly as a version-1 file stored them."""
import io
import json
import os
import zipfile

import numpy as np
import pytest

import problems
from bench import store
from bench.cli import main
from bench.solve import solve

MAX_ITER = 200


@pytest.fixture(scope="module")
def result():
    xs = np.array([[-1.2, 1.0], [0.5, -0.5], [1.5, 2.0]])
    return solve(problems.get("rosenbrock"), "newton", xs, max_iter=MAX_ITER, gtol=1e-8)


def _write(path, res, meta=None):
    w = store.RunWriter(str(path), meta or {"config": {"max_iter": MAX_ITER}})
    w.add_cell(res, 2)
    w.finish()
    return str(path)


def _raw(run_dir):
    (name,) = os.listdir(os.path.join(run_dir, "traces"))
    path = os.path.join(run_dir, "traces", name)
    with np.load(path, allow_pickle=False) as z:
        return path, {k: z[k] for k in z.files}


def test_file_holds_the_recorded_columns_and_reads_back_padded(tmp_path, result):
    run_dir = _write(tmp_path / "r", result)
    _, raw = _raw(run_dir)
    k = result.iterations_run
    assert 0 < k < MAX_ITER
    assert raw["trace_f"].shape == (3, k + 1) and raw["trace_x"].shape == (3, k + 1, 2)
    assert raw["trace_length"].shape == () and int(raw["trace_length"]) == MAX_ITER + 1
    cell = store.load_run(run_dir).cell("rosenbrock", "newton")
    assert "trace_length" not in cell
    want = result.trace.arrays()
    assert {f"trace_{n}" for n in want} == {c for c in cell if c.startswith("trace_")}
    for n, a in want.items():
        got = cell[f"trace_{n}"]
        assert got.shape == a.shape == (3, MAX_ITER + 1) + a.shape[2:] and got.dtype == a.dtype, n
        np.testing.assert_array_equal(got, a, err_msg=n)
    # the tail repeats each start's final values
    np.testing.assert_array_equal(cell["trace_f"][:, -1], cell["fun"])
    np.testing.assert_array_equal(cell["trace_x"][:, -1], cell["x"])


def _make_version_1(run_dir):
    """Rewrite a run as version 1 wrote it: every trace padded, no trace_length."""
    path, raw = _raw(run_dir)
    cell = store.load_run(run_dir).cell("rosenbrock", "newton")
    raw = {k: (cell[k] if k.startswith("trace_") else v) for k, v in raw.items() if k != "trace_length"}
    buf = io.BytesIO()
    np.savez_compressed(buf, **raw)
    with open(path, "wb") as fh:
        fh.write(buf.getvalue())
    mpath = os.path.join(run_dir, "meta.json")
    meta = json.load(open(mpath))
    meta["schema_version"] = 1
    json.dump(meta, open(mpath, "w"))
    return cell


def test_a_version_1_run_reads_the_same_and_a_resume_marks_it_version_2(tmp_path, result):
    run_dir = _write(tmp_path / "r", result)
    cell = _make_version_1(run_dir)
    run = store.load_run(run_dir)
    assert run.meta["schema_version"] == 1
    old = run.cell("rosenbrock", "newton")
    assert set(old) == set(cell)
    for k in cell:
        np.testing.assert_array_equal(old[k], cell[k], err_msg=k)
    # a resumed version-1 run gets its new cells in this version's form, and says so
    w = store.RunWriter(run_dir, resume=True)
    other = solve(problems.get("himmelblau"), "newton", np.array([[1.0, 1.0], [-1.0, 2.0]]), max_iter=MAX_ITER)
    w.add_cell(other, 2)
    w.finish()
    run = store.load_run(run_dir)
    assert run.meta["schema_version"] == store.SCHEMA_VERSION == 2
    np.testing.assert_array_equal(run.cell("rosenbrock", "newton")["trace_f"], cell["trace_f"])
    np.testing.assert_array_equal(run.cell("himmelblau", "newton")["trace_f"], other.trace.f)


@pytest.mark.parametrize("value, needle", [
    (np.array(-1), "trace_length must be one integer"),
    (np.array(3), "trace_length must be one integer"),       # fewer than the columns recorded
    (np.array(201.0), "trace_length must be one integer"),
    (np.array([201, 201]), "trace_length must be one integer"),
    (np.array(10**12), "trace_length must be one integer"),
])
def test_a_damaged_trace_length_is_one_line_exit_2(tmp_path, result, capsys, value, needle):
    run_dir = _write(tmp_path / "r", result)
    path, raw = _raw(run_dir)
    raw["trace_length"] = value
    with open(path, "wb") as fh:
        store.write_npz(fh, raw)
    capsys.readouterr()
    assert main(["plot", run_dir]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err and os.path.basename(path) in err


def test_a_trace_without_columns_is_one_line(tmp_path, result, capsys):
    run_dir = _write(tmp_path / "r", result)
    path, raw = _raw(run_dir)
    raw["trace_f"] = raw["trace_f"][:, :0]
    with open(path, "wb") as fh:
        store.write_npz(fh, raw)
    with pytest.raises(store.OptbenchError, match="trace_f must be numbers of shape"):
        store.load_run(run_dir).cell("rosenbrock", "newton")


def test_pad_columns_repeats_the_last_column_on_any_axis():
    a = np.arange(24.0).reshape(2, 3, 4)
    p = store.pad_columns(a, 6, axis=1)
    assert p.shape == (2, 6, 4)
    np.testing.assert_array_equal(p[:, :3], a)
    for j in range(3, 6):
        np.testing.assert_array_equal(p[:, j], a[:, 2])
    assert store.pad_columns(a, 3, axis=1) is a
    q = store.pad_columns(a[0], 5, axis=0)
    np.testing.assert_array_equal(q, np.concatenate([a[0], a[0][-1:], a[0][-1:]]))


def test_write_npz_is_an_npz_without_pickles(tmp_path):
    arrays = {"a": np.arange(5), "s": np.array(["x", "yz"]), "f": np.array(1.5)}
    path = tmp_path / "t.npz"
    with open(path, "wb") as fh:
        store.write_npz(fh, arrays)
    with zipfile.ZipFile(path) as zf:
        assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in zf.infolist())
    with np.load(path, allow_pickle=False) as z:
        assert set(z.files) == set(arrays)
        for k, v in arrays.items():
            np.testing.assert_array_equal(z[k], v)


def test_a_trace_cut_short_is_not_padded_over(tmp_path, result):
    run_dir = _write(tmp_path / "r", result)
    path, raw = _raw(run_dir)
    raw["trace_grad_norm"] = raw["trace_grad_norm"][:, :2]
    with open(path, "wb") as fh:
        store.write_npz(fh, raw)
    with pytest.raises(store.OptbenchError, match=r"trace_grad_norm has 3 starts × 2 columns, trace_f 3 × "):
        store.load_run(run_dir).cell("rosenbrock", "newton")


def test_figures_from_the_stored_columns_equal_those_from_padded_traces(figure_run, tmp_path, monkeypatch):
    """The figures read each cell as stored (``padded=False``): they look at no column past a
    start's nit, so they are the same bytes as from traces padded to max_iter + 1."""
    from bench import plots

    run = store.load_run(figure_run)
    assert any(run.cell(r["problem"], r["optimizer"], padded=False)["trace_f"].shape[1] < MAX_ITER + 1
               for r in run.summary)
    plots.plot_run_index(run, formats=("png",), out_dir=str(tmp_path / "compact"))
    real = store.Run.cell
    monkeypatch.setattr(store.Run, "cell", lambda self, p, o, padded=True: real(self, p, o, padded=True))
    plots.plot_run_index(store.load_run(figure_run), formats=("png",), out_dir=str(tmp_path / "padded"))
    names = sorted(os.listdir(tmp_path / "compact"))
    assert names and names == sorted(os.listdir(tmp_path / "padded"))
    for n in names:
        assert (tmp_path / "compact" / n).read_bytes() == (tmp_path / "padded" / n).read_bytes(), n


def test_a_trace_length_other_than_the_runs_max_iter_is_one_line(tmp_path, result):
    """meta.json's max_iter fixes the length: a swapped or edited trace_length (here 151 where
    max_iter + 1 = 201; 10⁹ would ask for gigabytes) is refused, padded or not."""
    run_dir = _write(tmp_path / "r", result)
    path, raw = _raw(run_dir)
    raw["trace_length"] = np.array(151)
    with open(path, "wb") as fh:
        store.write_npz(fh, raw)
    for padded in (True, False):
        with pytest.raises(store.OptbenchError, match="trace_length is 151, but meta.json's max_iter makes it 201"):
            store.load_run(run_dir).cell("rosenbrock", "newton", padded=padded)

"""The HTML report against hand-built run directories (no solving, no JAX compile): what its
tables say about non-finite starts, that every problem keeps its own section anchor, that
user-chosen names are escaped, and that ``--out`` never replaces a file that is not a report."""
import csv
import json
import os
import statistics
from html.parser import HTMLParser

import pytest

from bench import plots, report, store
from bench.cli import main
from bench.metrics import WorkWeights
from optbench_core import OptbenchError

NAN, INF = float("nan"), float("inf")


def _med_finite(values):
    """Textbook median over the finite values (statistics.median, not numpy)."""
    vals = [v for v in values if v is not None and v == v and abs(v) != INF]
    return statistics.median(vals) if vals else NAN


def _write_run(path, cells):
    """A run directory as optbench writes one: meta.json, summary.csv, starts.csv (no traces; the
    report's tables need none). ``cells``: (problem, optimizer, f_star, starts), each start a dict
    with status, success, nit, nfev, njev, nhev, f_final, grad_norm_final."""
    os.makedirs(path)
    summary, starts = [], []
    for problem, optimizer, f_star, rows in cells:
        sub = [None if f_star is None else r["f_final"] - f_star for r in rows]
        for i, r in enumerate(rows):
            starts.append(dict(problem=problem, optimizer=optimizer, start=i, nhvp=0, subopt=sub[i], **r))
        counts = {}
        for r in rows:
            counts[r["status"]] = counts.get(r["status"], 0) + 1
        summary.append(dict(
            problem=problem, optimizer=optimizer, dim=2, starts=len(rows),
            success_rate=sum(r["success"] for r in rows) / len(rows),
            nit_median=statistics.median(r["nit"] for r in rows), nfev_median=statistics.median(r["nfev"] for r in rows),
            njev_median=statistics.median(r["njev"] for r in rows), nhev_median=statistics.median(r["nhev"] for r in rows),
            nhvp_median=0.0, f_final_median=_med_finite([r["f_final"] for r in rows]),
            subopt_median=None if f_star is None else _med_finite(sub),
            grad_norm_median=_med_finite([r["grad_norm_final"] for r in rows]), f_star=f_star,
            statuses=";".join(f"{k}={v}" for k, v in sorted(counts.items())), compile_s=0.5, run_s=0.002,
            dtype="float64", trace_file=f"traces/cell{len(summary)}.npz"))

    def fmt(v):
        if v is None:
            return ""
        if isinstance(v, bool):
            return "true" if v else "false"
        return repr(v) if isinstance(v, float) else str(v)

    for name, cols, rows in (("summary.csv", store.SUMMARY_COLUMNS, summary),
                             ("starts.csv", store.STARTS_COLUMNS, starts)):
        with open(os.path.join(path, name), "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(cols)
            for r in rows:
                w.writerow([fmt(r[c]) for c in cols])
    meta = {"schema_version": store.SCHEMA_VERSION, "complete": True, "created": "2024-01-01T00:00:00+00:00",
            "host": "h<o>st & \"co\"", "command": "optbench run --problems '<x>'",
            "cells_done": [[c[0], c[1]] for c in cells]}
    with open(os.path.join(path, "meta.json"), "w", encoding="utf-8") as fh:
        json.dump(meta, fh)
    return store.load_run(path)


def _start(f, g, status="converged", success=True, nit=5, nfev=6, njev=6, nhev=0):
    return dict(status=status, success=success, nit=nit, nfev=nfev, njev=njev, nhev=nhev, f_final=f, grad_norm_final=g)


class _Page(HTMLParser):
    """The page's ids, in-page links, script blocks, and the text of each summary row's cells."""

    def __init__(self):
        super().__init__()
        self.ids, self.hrefs, self.scripts, self.rows = [], [], 0, []
        self._table, self._cell, self._in_summary = None, None, False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.append(a["id"])
        if tag == "a" and "href" in a:
            self.hrefs.append(a["href"])
        if tag == "script":
            self.scripts += 1
        if tag == "table":
            self._in_summary = a.get("id") == "summary"
        if tag == "tr" and self._in_summary:
            self.rows.append([])
        if tag == "td" and self._in_summary:
            self._cell = ""

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self.rows[-1].append(self._cell)
            self._cell = None
        if tag == "table":
            self._in_summary = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def _page(run):
    html = report.report_html(run, plots.FigureIndex())
    p = _Page()
    p.feed(html)
    return html, p


HEAD = ["problem", "optimizer", "dim", "starts", "solved", "nit", "nfev", "njev", "nhev", "nhvp", "work",
        "f", "f − f*", "‖∇f‖", "statuses", "compile s", "run ms", "ms / iter"]


def _row(page, problem, optimizer):
    for r in page.rows:
        if r and r[0] == problem and r[1].replace(" ★", "") == optimizer:
            return dict(zip(HEAD, r))
    raise AssertionError(f"no summary row {problem} × {optimizer}")


def test_medians_over_finite_starts_say_how_many(tmp_path):
    """A diverged start (f = NaN or inf) is left out of the medians of f, f − f* and ‖∇f‖: the
    summary must say over how many starts they are, not show the median of the others as if it
    were every start's; a cell where no start is finite says so instead of "–" (which reads as
    "f* unknown")."""
    cells = [("bowl", "gd", 1.0, [_start(2.0, 0.5, "max_iter", False), _start(NAN, INF, "diverged", False),
                                  _start(5.0, 0.25, "max_iter", False)]),
             ("bowl", "newton", 1.0, [_start(1.0, 1e-9), _start(1.0 + 1e-12, 2e-9), _start(1.0, 3e-9)]),
             ("bowl", "wild", 1.0, [_start(INF, INF, "diverged", False)] * 2)]
    run = _write_run(str(tmp_path / "run"), cells)
    _, page = _page(run)
    gd = _row(page, "bowl", "gd")
    # f: median of 2 and 5 = 3.5; f − f*: of 1 and 4 = 2.5; ‖∇f‖: of 0.5 and 0.25 = 0.375
    assert gd["f"] == "3.50e+00 (2 of 3)"
    assert gd["f − f*"] == "2.50e+00 (2 of 3)"
    assert gd["‖∇f‖"] == "3.75e-01 (2 of 3)"
    newton = _row(page, "bowl", "newton")     # every start finite: the bare median
    assert newton["‖∇f‖"] == "2.00e-09" and newton["f"] == "1.00e+00"
    wild = _row(page, "bowl", "wild")
    assert wild["f"] == wild["f − f*"] == wild["‖∇f‖"] == "none finite"


def test_final_f_shown_where_f_star_is_unknown(tmp_path):
    """Without f*, f − f* is empty: the summary must still show the f reached (a user's problem)."""
    cells = [("mine", "bfgs", None, [_start(0.75, 1e-9), _start(0.25, 1e-9), _start(0.5, 1e-9)])]
    _, page = _page(_write_run(str(tmp_path / "run"), cells))
    row = _row(page, "mine", "bfgs")
    assert row["f"] == "5.00e-01" and row["f − f*"] == "–"


def test_problems_sharing_a_file_safe_name_keep_distinct_anchors(tmp_path):
    """bowl:tag=a+b and bowl:tag=a*b are both ``bowl_tag_a_b`` as file names: the page gave both
    sections the same id, so the second one's link led to the first."""
    cells = [(p, "newton", 0.0, [_start(0.0, 0.0)]) for p in ("bowl:tag=a+b", "bowl:tag=a*b", "bowl_tag_a_b")]
    _, page = _page(_write_run(str(tmp_path / "run"), cells))
    sections = [i for i in page.ids if i.startswith("p-")]
    assert len(sections) == 3 and len(set(sections)) == 3
    assert {h[1:] for h in page.hrefs if h.startswith("#p-")} == set(sections)


def test_user_strings_are_escaped(tmp_path):
    """Problem and optimizer names and provenance text reach the page as text, never markup."""
    prob, opt = '<b>bowl&"q\'</b>', "<script>alert(1)</script>"
    run = _write_run(str(tmp_path / "run"), [(prob, opt, 0.0, [_start(0.0, 0.0)])])
    html, page = _page(run)
    assert page.scripts == 1       # the page's own sorting script only
    assert "<b>bowl" not in html and "<script>alert" not in html
    row = _row(page, prob, opt)
    assert row["problem"] == prob
    assert 'h&lt;o&gt;st &amp; &quot;co&quot;' in html


def test_work_and_time_per_iteration_by_hand(tmp_path):
    """work = nfev + njev + 2n·nhev (n = 2) per start, median over starts; ms / iter = run_s / max nit."""
    rows = [_start(0.0, 0.0, nit=4, nfev=5, njev=5, nhev=4), _start(0.0, 0.0, nit=10, nfev=12, njev=11, nhev=10),
            _start(0.0, 0.0, nit=7, nfev=9, njev=8, nhev=7)]
    _, page = _page(_write_run(str(tmp_path / "run"), [("bowl", "newton", 0.0, rows)]))
    row = _row(page, "bowl", "newton")
    assert float(row["work"]) == statistics.median([5 + 5 + 16, 12 + 11 + 40, 9 + 8 + 28])
    assert float(row["ms / iter"]) == pytest.approx(1e3 * 0.002 / 10, rel=1e-3)
    assert float(row["run ms"]) == pytest.approx(2.0)


def _one_line_error(capsys, rc):
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("optbench: error:") and "\n" not in err and "Traceback" not in err, err
    return err


def test_out_never_replaces_a_file_that_is_not_a_report(tmp_path, capsys):
    """``optbench report RUN --out notes.txt`` (or ``--out RUN/plots/ecdf.png``) replaced the file
    with HTML and reported success."""
    run = _write_run(str(tmp_path / "run"), [("bowl", "newton", 0.0, [_start(0.0, 0.0)])])
    os.makedirs(os.path.join(run.path, "plots"))
    png = os.path.join(run.path, "plots", "ecdf.png")
    notes = str(tmp_path / "notes.txt")
    for path, data in ((notes, b"my notes\n"), (png, b"\x89PNG\r\n\x1a\n" + bytes(range(256)))):
        with open(path, "wb") as fh:
            fh.write(data)
        # from Python (no figures to draw) and from the command line: refused, the file kept
        with pytest.raises(OptbenchError, match="not an optbench report"):
            report.write_report(run, out=path, figures=plots.FigureIndex())
        err = _one_line_error(capsys, main(["report", run.path, "--out", path]))
        assert path in err and "not an optbench report" in err
        with open(path, "rb") as fh:
            assert fh.read() == data


def test_out_replaces_an_earlier_report_or_an_empty_file(tmp_path):
    run = _write_run(str(tmp_path / "run"), [("bowl", "newton", 0.0, [_start(0.0, 0.0)])])
    earlier = str(tmp_path / "old.html")
    store.atomic_write_text(earlier, report.report_html(run, plots.FigureIndex(), WorkWeights()))
    empty = str(tmp_path / "empty.html")
    open(empty, "w").close()
    for path in (earlier, empty, str(tmp_path / "new.html")):
        assert report.report_path(run, path) == path


def test_large_counts_are_shown_in_full(tmp_path):
    """1234567 evaluations read 1.23457e+06 (six digits of {:g}), not the count in starts.csv."""
    rows = [_start(0.0, 0.0, nit=1000001, nfev=1234567, njev=1234567, nhev=0)]
    _, page = _page(_write_run(str(tmp_path / "run"), [("bowl", "gd", 0.0, rows)]))
    row = _row(page, "bowl", "gd")
    assert row["nit"] == "1000001" and row["nfev"] == "1234567" and row["work"] == str(2 * 1234567)


def test_out_naming_a_directory_leaves_nothing_behind(tmp_path, capsys):
    """``--out new/`` made the directory new/ and then failed: a one-line error, nothing created."""
    run = _write_run(str(tmp_path / "run"), [("bowl", "newton", 0.0, [_start(0.0, 0.0)])])
    target = str(tmp_path / "new") + "/"
    err = _one_line_error(capsys, main(["report", run.path, "--out", target]))
    assert not os.path.exists(tmp_path / "new")
    assert "names a directory" in err

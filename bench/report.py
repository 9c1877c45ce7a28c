"""One self-contained HTML file per run (or per comparison of runs).

The file opens from disk with no network: figures are embedded as base64 PNG, the style sheet and
the few lines of script that sort the summary table are inline, and no URL appears anywhere
(text that happens to contain ``://``, say in a command line, is written with an escaped slash).

Layout: who won each problem, provenance (meta.json), the summary table (click a header to sort),
the run-wide profiles, then a section per problem with its figures and a per-optimizer table of
the cost to success (iterations, weighted work, time = iterations × the batch's time per
iteration). ``--out`` replaces an existing file only if it is an earlier report (or empty).
"""
from __future__ import annotations

import base64
import html
import json
import os
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from optbench_core import OptbenchError

from . import plots, store
from .metrics import WorkWeights
from .store import Run

REPORT_NAME = "report.html"

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:1.5em auto;max-width:1560px;
padding:0 1em;color:#222;line-height:1.4}
h1{font-size:1.5em;margin-bottom:.2em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
h3{margin-top:1.4em}
table{border-collapse:collapse;font-size:.86em;margin:.6em 0}
th,td{border:1px solid #ddd;padding:.22em .5em;text-align:right;white-space:nowrap}
th{background:#f3f3f3;position:sticky;top:0}
td.t,th.t{text-align:left}
table.sortable th{cursor:pointer;user-select:none}
table.sortable th[data-dir=asc]::after{content:" \\25B2"}table.sortable th[data-dir=desc]::after{content:" \\25BC"}
table.kv td{text-align:left;white-space:normal;max-width:1100px;word-break:break-all}
table.kv td:first-child{font-weight:600;white-space:nowrap;word-break:normal}
tr.best td{background:#eef7ee}
figure{margin:1em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.85em;color:#555}
.muted{color:#777;font-size:.9em}
nav a{margin-right:1em}
"""

_JS = """
document.querySelectorAll('table.sortable').forEach(function(table){
  table.querySelectorAll('th').forEach(function(th, i){
    th.addEventListener('click', function(){
      var dir = th.getAttribute('data-dir') === 'asc' ? 'desc' : 'asc';
      table.querySelectorAll('th').forEach(function(h){ h.removeAttribute('data-dir'); });
      th.setAttribute('data-dir', dir);
      var body = table.tBodies[0];
      var key = function(r){ var c = r.cells[i]; var v = c.hasAttribute('data-v') ? c.getAttribute('data-v') : c.textContent;
                             var n = parseFloat(v); return isNaN(n) ? v : n; };
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function(a, b){ var x = key(a), y = key(b);
        var c = (typeof x === 'number' && typeof y === 'number') ? (x < y ? -1 : x > y ? 1 : 0)
                                                                 : String(x).localeCompare(String(y));
        return dir === 'asc' ? c : -c; });
      rows.forEach(function(r){ body.appendChild(r); });
    });
  });
});
"""


def esc(value: Any) -> str:
    """HTML-escape text, and break ``://`` so no text reads as a link to anywhere."""
    return html.escape(str(value), quote=True).replace("://", ":&#47;&#47;")


def _num(v, fmt="{:g}") -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "–" if v is None or np.isnan(v) else ("∞" if v > 0 else "−∞")
    if fmt == "{:g}" and float(v).is_integer() and abs(v) < 1e15:
        return str(int(v))   # a count in full: {:g} showed 1234567 evaluations as 1.23457e+06
    return fmt.format(v)


def _td(v, fmt="{:g}", text: Optional[str] = None) -> str:
    """A numeric cell: shown formatted, sorted by its value (missing sorts last)."""
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return '<td data-v="Infinity">–</td>'
    return f'<td data-v="{float(v)!r}">{esc(text if text is not None else _num(v, fmt))}</td>'


def embed_png(path: str, alt: str, caption: str = "", png: Optional[bytes] = None) -> str:
    """A ``<figure>`` holding the PNG at ``path`` (or the bytes ``png``, drawn in memory) as a data URI."""
    if png is None:
        with open(path, "rb") as fh:
            png = fh.read()
    data = base64.b64encode(png).decode("ascii")
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f'<figure><img alt="{esc(alt)}" src="data:image/png;base64,{data}">{cap}</figure>'


# -- numbers the tables show ---------------------------------------------------------------------

def cell_stats(run: Run, weights: WorkWeights = WorkWeights()) -> Dict[tuple, Dict[str, float]]:
    """Per (problem, optimizer): time per iteration and median costs to success, from starts.csv.

    Time per iteration = run_s / iterations the batch ran (its slowest start's nit); a start's
    time = its nit × that. Costs are medians over the starts that succeeded (NaN if none did).
    """
    by_cell: Dict[tuple, List[dict]] = {}
    for s in run.starts:
        by_cell.setdefault((s["problem"], s["optimizer"]), []).append(s)
    out = {}
    for row in run.summary:
        key = (row["problem"], row["optimizer"])
        starts = by_cell.get(key, [])
        dim = int(row["dim"])
        nit = np.array([s["nit"] for s in starts], dtype=float)
        w = np.array([s["nfev"] + weights.g * s["njev"] + weights.hessian_weight(dim) * s["nhev"]
                      + weights.hvp * s["nhvp"] for s in starts], dtype=float)
        ok = np.array([bool(s["success"]) for s in starts], dtype=bool)
        run_s = row.get("run_s")
        tpi = (run_s / max(nit.max(), 1.0)) if (run_s is not None and nit.size) else float("nan")
        med = lambda a: float(np.median(a)) if a.size else float("nan")  # noqa: E731
        out[key] = {"time_per_iter": tpi, "work_median": med(w), "ok_nit": med(nit[ok]), "ok_work": med(w[ok]),
                    "ok_time": med(nit[ok] * tpi), "solved": int(ok.sum()), "starts": len(starts),
                    # how many starts the medians of f, f − f* and ‖∇f‖ in summary.csv are over
                    # (those where the value is finite: a diverged start's is NaN or ±inf)
                    "finite": {col: _finite_count(starts, col) for col in _FINITE_COLUMNS.values()}}
    return out


#: summary.csv's medians over finite values → the per-start column they are taken from
_FINITE_COLUMNS = {"f_final_median": "f_final", "subopt_median": "subopt", "grad_norm_median": "grad_norm_final"}


def _finite_count(starts: List[dict], col: str) -> int:
    n = 0
    for s in starts:
        v = s.get(col)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v):
            n += 1
    return n


def winners(run: Run, stats: Dict[tuple, Dict[str, float]]) -> Dict[str, Optional[str]]:
    """Per problem, the optimizer that solved the most starts, ties broken by median work to success."""
    best: Dict[str, Optional[str]] = {}
    for p in run.problems():
        cands = [(k[1], v) for k, v in stats.items() if k[0] == p and v["solved"] > 0]
        if not cands:
            best[p] = None
            continue
        cands.sort(key=lambda kv: (-kv[1]["solved"] / max(kv[1]["starts"], 1), kv[1]["ok_work"], kv[1]["ok_time"]))
        best[p] = cands[0][0]
    return best


# -- sections ------------------------------------------------------------------------------------

_META_ORDER = ["command", "created", "complete", "wall_s", "backend", "device_kind", "device_count", "dtype", "x64",
               "git_commit", "host", "platform", "cpu_count", "versions", "config", "schema_version"]


def provenance_html(meta: Dict[str, Any]) -> str:
    """meta.json as a key/value table (nested objects flattened as ``a.b``)."""
    rows = []

    def add(key, val):
        if isinstance(val, dict):
            for k, v in val.items():
                add(f"{key}.{k}", v)
        else:
            text = val if isinstance(val, str) else json.dumps(val, default=str)
            rows.append(f'<tr><td>{esc(key)}</td><td>{esc(text)}</td></tr>')

    keys = [k for k in _META_ORDER if k in meta] + sorted(k for k in meta if k not in _META_ORDER and k != "cells_done")
    for k in keys:
        add(k, meta[k])
    if "cells_done" in meta:
        rows.append(f'<tr><td>cells_done</td><td>{len(meta["cells_done"])} cells</td></tr>')
    return '<table class="kv" id="provenance">' + "".join(rows) + "</table>"


def summary_html(run: Run, stats: Dict[tuple, Dict[str, float]], best: Dict[str, Optional[str]],
                 weights: WorkWeights) -> str:
    """The sortable summary table: one row per problem × optimizer."""
    head = ["problem", "optimizer", "dim", "starts", "solved", "nit", "nfev", "njev", "nhev", "nhvp", "work",
            "f", "f − f*", "‖∇f‖", "statuses", "compile s", "run ms", "ms / iter"]
    left = {"problem", "optimizer", "statuses"}
    out = ['<table class="sortable" id="summary"><thead><tr>']
    out += [f'<th class="{"t" if h in left else ""}">{esc(h)}</th>' for h in head]
    out.append("</tr></thead><tbody>")
    for r in run.summary:
        st = stats[(r["problem"], r["optimizer"])]
        win = best.get(r["problem"]) == r["optimizer"]
        out.append(f'<tr class="{"best" if win else ""}">')
        out.append(f'<td class="t">{esc(r["problem"])}</td><td class="t">{esc(r["optimizer"])}{" ★" if win else ""}</td>')
        out.append(_td(r["dim"]) + _td(r["starts"]) + _td(r["success_rate"], "{:.0%}"))
        for k in ("nit_median", "nfev_median", "njev_median", "nhev_median", "nhvp_median"):
            out.append(_td(r.get(k)))
        out.append(_td(st["work_median"]))
        for col in ("f_final_median", "subopt_median", "grad_norm_median"):
            out.append(_finite_td(r, col, st))
        out.append(f'<td class="t">{esc(r.get("statuses", ""))}</td>')
        out.append(_td(r.get("compile_s"), "{:.2f}"))
        rs = r.get("run_s")
        out.append(_td(None if rs is None else 1e3 * rs, "{:.3g}"))
        tpi = st["time_per_iter"]
        out.append(_td(None if not np.isfinite(tpi) else 1e3 * tpi, "{:.3g}"))
        out.append("</tr>")
    out.append("</tbody></table>")
    out.append(f'<p class="muted">Medians over starts; those of f, f − f* and ‖∇f‖ over the starts where the value '
               "is finite, with (k of n) where some start's is not (a diverged start's f is NaN or ±∞: the "
               "statuses column says why); “none finite” where no start's is, – where f* is unknown. "
               f'work = {esc(weights.label())}. ms / iter = run time / '
               "iterations the batch ran (every start of a batch runs to the slowest one). ★: the problem's "
               "winner (most starts solved, then least median work to success). Click a header to sort.</p>")
    return "".join(out)


def _finite_td(row: Dict[str, Any], col: str, st: Dict[str, Any]) -> str:
    """A summary median of values that may be non-finite: its cell says over how many starts."""
    v, n, k = row.get(col), st["starts"], st["finite"][_FINITE_COLUMNS[col]]
    if v is None:   # f* unknown: no f − f* at all
        return _td(None)
    if k == 0 and n > 0:
        return '<td data-v="Infinity">none finite</td>'
    cell = _td(v, "{:.2e}")
    if k < n:
        cell = cell.replace("</td>", f" ({k} of {n})</td>")
    return cell


def problem_table_html(run: Run, problem: str, stats, best) -> str:
    """Per optimizer on one problem: starts solved and median cost to success."""
    out = ['<table class="sortable"><thead><tr><th class="t">optimizer</th><th>solved</th>'
           "<th>iterations to success</th><th>work to success</th><th>time to success [ms]</th>"
           '<th class="t">statuses</th></tr></thead><tbody>']
    for r in run.summary:
        if r["problem"] != problem:
            continue
        st = stats[(problem, r["optimizer"])]
        win = best.get(problem) == r["optimizer"]
        ok_time = st["ok_time"]
        out.append(f'<tr class="{"best" if win else ""}"><td class="t">{esc(r["optimizer"])}{" ★" if win else ""}</td>'
                   + _td(st["solved"], text=f'{st["solved"]}/{st["starts"]}') + _td(st["ok_nit"]) + _td(st["ok_work"])
                   + _td(None if not np.isfinite(ok_time) else 1e3 * ok_time, "{:.3g}")
                   + f'<td class="t">{esc(r.get("statuses", ""))}</td></tr>')
    out.append("</tbody></table>")
    return "".join(out)


_CAPTIONS = {
    "convergence": "Median (line) and interquartile band across starts against iterations, weighted "
                   "evaluations and wall time.",
    "trajectories": "Paths of a few starts per optimizer over a filled contour of f on log-spaced levels.",
    "taylor": "Trust-region model: ρ = actual / predicted reduction and the radius per iteration.",
    "profile_performance": "Fraction of (problem, start) pairs an optimizer solves within a factor τ of the best "
                           "optimizer on that pair (Dolan & Moré 2002).",
    "profile_data": "Fraction of (problem, start) pairs solved to tolerance τ within κ(n+1) units of work "
                     "(Moré & Wild 2009).",
    "ecdf": "Fraction of (problem, start, target) triples reached within a budget of work / n (COCO).",
}


def _caption(path: str) -> str:
    stem = os.path.splitext(os.path.basename(path))[0]
    for key, text in _CAPTIONS.items():
        if stem == key or stem.startswith(key + "_"):
            return text
    return ""


def _embed(figures: plots.FigureIndex, path: str) -> str:
    """One figure of ``figures`` (a file, or bytes drawn in memory) embedded, with its caption."""
    return embed_png(path, os.path.basename(path), _caption(path), figures.read(path))


def _anchors(problems: Sequence[str]) -> Dict[str, str]:
    """A distinct in-page anchor per problem: ``p-<file-safe name>``, numbered where two specs
    share a file-safe name (``bowl:tag=a+b`` and ``bowl:tag=a*b`` are both ``bowl_tag_a_b``)."""
    out: Dict[str, str] = {}
    used = set()
    for p in problems:
        base = "p-" + plots.safe_name(p)
        a, i = base, 2
        while a in used:
            a, i = f"{base}-{i}", i + 1
        used.add(a)
        out[p] = a
    return out


def _page(title: str, body: List[str]) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{esc(title)}</title>"
            f"<style>{_CSS}</style></head><body>\n" + "\n".join(body) + f"\n<script>{_JS}</script>\n</body></html>\n")


def report_html(run: Run, figures: plots.FigureIndex, weights: WorkWeights = WorkWeights()) -> str:
    """The report of one run as an HTML string (figures read from the PNG files in ``figures``)."""
    stats = cell_stats(run, weights)
    best = winners(run, stats)
    name = os.path.basename(os.path.normpath(run.path))
    meta = run.meta
    body = [f"<h1>optbench run {esc(name)}</h1>",
            f'<p class="muted">{esc(meta.get("created", ""))} · {esc(meta.get("backend", ""))} '
            f'{esc(meta.get("device_kind", ""))} · {esc(meta.get("dtype", ""))} · '
            f'{len(run.problems())} problems × {len(run.optimizers())} optimizers'
            f'{"" if meta.get("complete") else " · INCOMPLETE run (interrupted?)"}</p>']
    anchor = _anchors(run.problems())
    nav = ['<a href="#provenance-h">provenance</a>', '<a href="#summary-h">summary</a>',
           '<a href="#profiles-h">profiles</a>'] + [f'<a href="#{anchor[p]}">{esc(p)}</a>' for p in run.problems()]
    body.append("<nav>" + "".join(nav) + "</nav>")
    if best:
        items = "".join(f'<li><a href="#{anchor[p]}">{esc(p)}</a>: {esc(o) if o else "no optimizer solved a start"}</li>'
                        for p, o in best.items())
        body.append(f"<h2>Winners</h2><ul>{items}</ul>")
    body.append('<h2 id="provenance-h">Provenance</h2>' + provenance_html(meta))
    body.append('<h2 id="summary-h">Summary</h2>' + summary_html(run, stats, best, weights))
    body.append('<h2 id="profiles-h">Profiles</h2>')
    body += [_embed(figures, p) for p in figures.profiles if p.endswith(".png")]
    if not figures.profiles:
        body.append('<p class="muted">No finished cells: nothing to profile.</p>')
    for p in run.problems():
        body.append(f'<h2 id="{anchor[p]}">{esc(p)}</h2>')
        body.append(problem_table_html(run, p, stats, best))
        body += [_embed(figures, f) for f in figures.problems.get(p, []) if f.endswith(".png")]
    return _page(f"optbench run {name}", body)


_REPORT_HEAD = "<!DOCTYPE html>\n<html"
_REPORT_TITLE = "<title>optbench run "


def is_report_file(path: str, title: str = _REPORT_TITLE) -> bool:
    """Whether the existing file ``path`` may be replaced by a report: it is empty or an earlier
    run report (its head names the page ``optbench run …``; ``title``: ``<title>optbench
    compare`` for a compare page), not some other file of the user's."""
    head = store.file_head(path)
    return head is not None and (head == "" or (head.startswith(_REPORT_HEAD) and title in head))


_COMPARE_TITLE = "<title>optbench compare<"


def report_path(run: Run, out: Optional[str] = None) -> str:
    """Where the report goes (default ``<run>/report.html``), its directory created and checked
    writable: one line naming the directory otherwise, so a bad ``--out`` fails before drawing.
    An existing file at an ``out`` given is replaced only if it is an earlier report: ``--out
    notes.txt`` or ``--out RUN/plots/ecdf.png`` is one line, the file kept (the default path is the
    run's own report, rewritten as ever)."""
    path = out or os.path.join(run.path, REPORT_NAME)
    if os.path.isdir(path) or path.endswith(("/", os.sep)):   # checked before any directory is made
        raise OptbenchError(f"{path} names a directory, not a file; give a file name such as {REPORT_NAME}")
    store.refuse_special(path, f"--out {path}" if out else None)
    if out and os.path.lexists(path) and not is_report_file(path):
        raise OptbenchError(f"{path} exists and is not an optbench report; remove it or choose another file name")
    store.writable_dir(os.path.dirname(path) or ".", "the report")
    return path


def write_report(run: Run, out: Optional[str] = None, figures: Optional[plots.FigureIndex] = None,
                 weights: WorkWeights = WorkWeights()) -> str:
    """Write the run's report (default ``<run>/report.html``). Without ``figures`` its PNGs are
    drawn in memory: the report embeds them, so the run directory is not written (it may be
    read-only) and its plots/ stay as they were."""
    path = report_path(run, out)
    if figures is None:
        figures = plots.plot_run_index(run, formats=("png",), weights=weights, out_dir=plots.FigureMemory())
    store.atomic_write_text(path, report_html(run, figures, weights))
    return path


# -- comparing runs ------------------------------------------------------------------------------

def compare_rows(runs: Sequence[Run], labels: Sequence[str]) -> List[Dict[str, Any]]:
    """Each later run's cells against the first run's (the baseline), in the baseline's order.

    Fields: problem, optimizer, run, and for base / other: success_rate, nit_median,
    nfev_median, subopt_median, run_s, time_per_iter; ``time_ratio`` = other / base run time;
    ``missing`` names the run lacking the cell, if any.
    """
    def index(run):
        tpi = {}
        for (p, o), st in cell_stats(run).items():
            tpi[(p, o)] = st["time_per_iter"]
        return {(r["problem"], r["optimizer"]): dict(r, time_per_iter=tpi[(r["problem"], r["optimizer"])])
                for r in run.summary}

    base, base_label = index(runs[0]), labels[0]
    rows = []
    for run, lab in zip(runs[1:], labels[1:]):
        other = index(run)
        keys = list(base) + [k for k in other if k not in base]
        for k in keys:
            a, b = base.get(k), other.get(k)
            row = {"problem": k[0], "optimizer": k[1], "run": lab, "base": base_label,
                   "missing": None if (a and b) else (lab if a else base_label)}
            for f in ("success_rate", "nit_median", "nfev_median", "subopt_median", "run_s", "time_per_iter"):
                row["base_" + f] = a.get(f) if a else None
                row[f] = b.get(f) if b else None
            ra, rb = row["base_run_s"], row["run_s"]
            row["time_ratio"] = rb / ra if (ra and rb is not None and ra > 0) else None
            rows.append(row)
    return rows


def _arrow(a, b, fmt) -> str:
    return f"{_num(a, fmt) if a is not None else '–'} → {_num(b, fmt) if b is not None else '–'}"


def compare_table_cells(row: Dict[str, Any]) -> List[str]:
    """The text columns of one difference row (shared by the terminal table and the HTML)."""
    if row["missing"]:
        return [row["problem"], row["optimizer"], row["run"], f"only in {row['base'] if row['missing'] == row['run'] else row['run']}",
                "", "", "", "", ""]
    ms = lambda v: None if v is None else 1e3 * v  # noqa: E731
    return [row["problem"], row["optimizer"], row["run"],
            _arrow(row["base_success_rate"], row["success_rate"], "{:.0%}"),
            _arrow(row["base_nit_median"], row["nit_median"], "{:g}"),
            _arrow(row["base_nfev_median"], row["nfev_median"], "{:g}"),
            _arrow(row["base_subopt_median"], row["subopt_median"], "{:.1e}"),
            _arrow(ms(row["base_run_s"]), ms(row["run_s"]), "{:.3g}"),
            "–" if row["time_ratio"] is None else f"{row['time_ratio']:.2f}×"]


COMPARE_HEADER = ["problem", "optimizer", "run", "solved", "nit", "nfev", "f − f*", "run ms", "time ratio"]


def compare_html(runs: Sequence[Run], labels: Sequence[str], rows: List[Dict[str, Any]],
                 figures: plots.FigureIndex) -> str:
    """A self-contained page overlaying several runs: what each run is, the differences, the figures."""
    body = [f"<h1>optbench compare: {esc(' vs '.join(labels))}</h1>",
            f'<p class="muted">Baseline: {esc(labels[0])}. Colour = optimizer; line style = run '
            f'({esc(", ".join(f"{plots.RUN_LINESTYLES[i % 4]} {lab}" for i, lab in enumerate(labels)))}).</p>',
            "<h2>Runs</h2>"]
    keys = ["created", "backend", "device_kind", "dtype", "git_commit", "host", "command"]
    t = ['<table class="kv"><tr><td>run</td>' + "".join(f"<td>{esc(lab)}</td>" for lab in labels) + "</tr>"]
    t.append("<tr><td>path</td>" + "".join(f"<td>{esc(r.path)}</td>" for r in runs) + "</tr>")
    for k in keys:
        t.append(f"<tr><td>{esc(k)}</td>" + "".join(f"<td>{esc(r.meta.get(k, ''))}</td>" for r in runs) + "</tr>")
    t.append("</table>")
    body.append("".join(t))
    body.append("<h2>Differences against the baseline</h2>")
    tab = ['<table class="sortable" id="differences"><thead><tr>'
           + "".join(f'<th class="{"t" if i < 3 else ""}">{esc(h)}</th>' for i, h in enumerate(COMPARE_HEADER))
           + "</tr></thead><tbody>"]
    for r in rows:
        cells = compare_table_cells(r)
        tab.append("<tr>" + "".join(f'<td class="{"t" if i < 4 and r["missing"] or i < 3 else ""}">{esc(c)}</td>'
                                    for i, c in enumerate(cells)) + "</tr>")
    tab.append("</tbody></table>")
    body.append("".join(tab))
    body.append("<h2>Profiles</h2>")
    body += [_embed(figures, p) for p in figures.profiles if p.endswith(".png")]
    if figures.profiles_note:
        body.append(f'<p class="muted">No performance or data profiles or ECDF: the runs\' starts differ '
                    f'({esc(figures.profiles_note)}); a profile scores (problem, start) instances.</p>')
    anchor = _anchors(list(figures.problems))
    for p, paths in figures.problems.items():
        body.append(f'<h2 id="{anchor[p]}">{esc(p)}</h2>')
        body += [_embed(figures, f) for f in paths if f.endswith(".png")]
    return _page("optbench compare", body)

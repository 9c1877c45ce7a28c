"""The HTML report: self-contained (every figure embedded, no URL), with provenance and summary."""
import base64
import json
import os
import shutil
from html.parser import HTMLParser

import pytest

from bench import report, store
from bench.cli import main


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs, self.tables, self.imgs = [], [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("src", "href", "action", "data"):
            if key in a:
                self.refs.append(a[key])
        if tag == "img":
            self.imgs.append(a.get("src", ""))
        if tag == "table":
            self.tables.append(a.get("id"))


def _read(path):
    with open(path, encoding="utf-8") as fh:
        return fh.read()


def test_report_holds_every_figure_summary_and_provenance(figure_run):
    path = os.path.join(figure_run, "report.html")
    html = _read(path)
    # every PNG of the run, byte for byte, as a data URI
    pngs = sorted(n for n in os.listdir(os.path.join(figure_run, "plots")) if n.endswith(".png"))
    assert len(pngs) == 7
    for n in pngs:
        with open(os.path.join(figure_run, "plots", n), "rb") as fh:
            assert "data:image/png;base64," + base64.b64encode(fh.read()).decode() in html, n
    # nothing outside the file: no URL anywhere, every reference a data URI or an in-page anchor
    assert "http://" not in html and "https://" not in html
    p = _Links()
    p.feed(html)
    assert len(p.imgs) == len(pngs)
    assert all(r.startswith("data:image/png;base64,") or r.startswith("#") for r in p.refs)
    # summary table: one row per cell; provenance: the meta fields
    assert "summary" in p.tables and "provenance" in p.tables
    run = store.load_run(figure_run)
    for r in run.summary:
        assert f'<td class="t">{r["problem"]}</td><td class="t">{r["optimizer"]}' in html
    meta = json.load(open(os.path.join(figure_run, "meta.json")))
    for value in (meta["versions"]["jax"], meta["host"], meta["backend"], meta["git_commit"], meta["command"]):
        assert (value if isinstance(value, str) else json.dumps(value)) in html
    assert "sortable" in html and "<script>" in html


def test_winner_and_costs_from_starts(figure_run):
    run = store.load_run(figure_run)
    stats = report.cell_stats(run)
    for r in run.summary:
        st = stats[(r["problem"], r["optimizer"])]
        starts = [s for s in run.starts if (s["problem"], s["optimizer"]) == (r["problem"], r["optimizer"])]
        assert st["solved"] == sum(s["success"] for s in starts)
        assert st["time_per_iter"] == pytest.approx(r["run_s"] / max(max(s["nit"] for s in starts), 1))
    best = report.winners(run, stats)
    for p, o in best.items():
        rates = {r["optimizer"]: r["success_rate"] for r in run.summary if r["problem"] == p}
        assert rates[o] == max(rates.values())


def test_no_report_flag_then_report_command(tiny_run, tmp_path, capsys):
    assert not os.path.exists(os.path.join(tiny_run, "report.html"))
    assert os.path.exists(os.path.join(tiny_run, "plots", "convergence_himmelblau.png"))
    # the report, written afterwards from the directory alone; text that holds a URL stays unlinked
    copy = str(tmp_path / "run")
    shutil.copytree(tiny_run, copy)
    mpath = os.path.join(copy, "meta.json")
    meta = json.load(open(mpath))
    meta["command"] = "optbench run --problems https://example.org/x"
    store.atomic_write_text(mpath, json.dumps(meta))
    out = str(tmp_path / "deep" / "r.html")
    assert main(["report", copy, "--out", out]) == 0
    assert out in capsys.readouterr().out
    html = _read(out)
    assert "https://" not in html and "http://" not in html and "example.org" in html
    assert html.count("<img") == 5  # convergence, trajectories, three profiles
    assert main(["report", copy, "--out", str(tmp_path)]) == 2  # a directory
    assert "is a directory" in capsys.readouterr().err

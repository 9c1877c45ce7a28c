"""optbench compare scores profiles instance by instance, (problem, start): runs from other
starts (another seed, another start count) get no profiles and a line saying why."""
import os

import pytest

from bench.cli import main

RUN = ["--problems", "himmelblau", "--optimizers", "newton", "--max-iter", "50", "--repeats", "1",
       "--no-plots", "--quiet"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("cmp")
    out = {}
    for name, extra in (("a", ["--seed", "1", "--starts", "3"]), ("b", ["--seed", "1", "--starts", "3"]),
                        ("c", ["--seed", "2", "--starts", "3"]), ("d", ["--seed", "1", "--starts", "4"]),
                        ("f32", ["--seed", "1", "--starts", "3", "--dtype", "float32"])):
        out[name] = str(d / name)
        assert main(["run", *RUN, *extra, "--out", out[name]]) == 0
    return out


def _profiles(out):
    return sorted(n for n in os.listdir(out) if n.startswith(("performance", "data", "ecdf")))


@pytest.mark.parametrize("other, note", [
    ("c", "ran from other starts than"),
    ("d", "has 4 start(s)"),
])
def test_profiles_left_out_when_starts_differ(runs, tmp_path, capsys, other, note):
    out = str(tmp_path / "cmp")
    assert main(["compare", runs["a"], runs[other], "--out", out, "--formats", "png"]) == 0
    printed = capsys.readouterr().out
    assert "no performance or data profiles or ECDF: the runs' starts differ" in printed and note in printed
    assert _profiles(out) == []
    with open(os.path.join(out, "compare.html"), encoding="utf-8") as fh:
        assert "No performance or data profiles or ECDF: the runs' starts differ" in fh.read()
    assert os.path.isfile(os.path.join(out, "convergence_himmelblau.png"))


@pytest.mark.parametrize("other", ["b", "f32"])
def test_profiles_drawn_for_the_same_starts(runs, tmp_path, capsys, other):
    """The same seed and count: profiles drawn (a float32 run's starts are the float64 ones rounded)."""
    out = str(tmp_path / "cmp")
    assert main(["compare", runs["a"], runs[other], "--out", out, "--formats", "png"]) == 0
    assert "starts differ" not in capsys.readouterr().out
    assert _profiles(out)

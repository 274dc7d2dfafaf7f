"""The Pareto-front figure: each family's line holds exactly its non-dominated points."""

from __future__ import annotations

from hwaware.plots import Point, pareto_figure, pareto_front


def _dominated(p, others):
    return any(o[0] <= p[0] and o[1] >= p[1] and (o[0] < p[0] or o[1] > p[1]) for o in others if o != p)


def test_pareto_figure_draws_each_family_front_and_leaves_rejected_points_out():
    kept = {"a": [Point(1.0, 1.0, 0.90), Point(0.8, 0.9, 0.89), Point(0.85, 0.7, 0.85), Point(0.6, 0.95, 0.80)],
            "b": [Point(1.0, 1.0, 0.90), Point(0.7, 0.8, 0.88)]}
    rejected = {"a": [Point(0.5, 0.5, 0.99)]}  # would dominate everything: must not enter a front
    fig = pareto_figure(kept, rejected=rejected, anchors={"a": Point(0.8, 0.9, 0.89, "E 0.800")},
                        accuracy_floor=0.89, energy_marks=[(0.6, "target")], start=Point(1.0, 1.0, 0.90, "start"))
    ax_e, ax_l = fig.axes
    for ax, cost in ((ax_e, lambda p: p.energy), (ax_l, lambda p: p.latency_ms)):
        lines = {ln.get_label().split(":")[0]: ln for ln in ax.get_lines() if not ln.get_label().startswith("_")}
        assert set(lines) == {"a", "b"}
        for name, pts in kept.items():
            xy = [(cost(p), 100 * p.accuracy) for p in pts]
            expected = sorted(q for q in xy if not _dominated(q, xy))
            drawn = sorted(zip(lines[name].get_xdata(), lines[name].get_ydata()))
            assert [tuple(map(float, d)) for d in drawn] == [tuple(map(float, e)) for e in expected], (name, ax)
    assert any("E 0.800" in t.get_text() for t in ax_e.get_legend().get_texts())


def test_pareto_front_keeps_ties_out():
    assert pareto_front([(1.0, 0.5), (1.0, 0.6), (2.0, 0.6), (0.5, 0.4)]) == [3, 1]

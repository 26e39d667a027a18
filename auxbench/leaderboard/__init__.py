"""Leaderboards: statistics (:mod:`.stats`); the scored board (:mod:`.board`); per-column
comparisons (:mod:`.tables`), ranks across columns (:mod:`.ranks`), costs, paper numbers and curves
(:mod:`.supplementary`); power (:mod:`.power`); figures (:mod:`.plots`); the markdown
(:mod:`.render`); the reproduction record (:mod:`.record`); and :func:`publish` (:mod:`.publishing`).

None of these imports torch; :func:`publish` reads the results store (which does) when called.
Rendering is imported lazily so that ``import auxbench.leaderboard`` stays light.
"""


def __getattr__(name: str):
    if name == "publish":
        from auxbench.leaderboard.publishing import publish

        return publish
    if name == "render_markdown":
        from auxbench.leaderboard.render import render_markdown

        return render_markdown
    raise AttributeError(name)


__all__ = ["publish", "render_markdown"]

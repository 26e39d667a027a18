"""Leaderboards: statistics (:mod:`.stats`), per-cell and across-column tables (:mod:`.tables`),
figures (:mod:`.plots`) and the markdown with its entry point :func:`publish` (:mod:`.render`).

None of these imports torch; :func:`publish` reads the results store (which does) when called.
Rendering is imported lazily so that ``import auxbench.leaderboard`` stays light.
"""


def __getattr__(name: str):
    if name in ("publish", "render_markdown"):
        from auxbench.leaderboard import render

        return getattr(render, name)
    raise AttributeError(name)


__all__ = ["publish", "render_markdown"]

"""Leaderboards: statistics (:mod:`.stats`), markdown tables (:mod:`.render`), plots.

Rendering is imported lazily so that the statistics load without torch.
"""


def __getattr__(name: str):
    if name in ("publish", "render_markdown"):
        from auxbench.leaderboard import render

        return getattr(render, name)
    raise AttributeError(name)


__all__ = ["publish", "render_markdown"]

"""``amnet search`` and ``amnet serve`` with MLflow model URIs: the search package's commands, handed the
loader that resolves ``models:/...`` and ``runs:/...`` (:func:`amnet.ops.registry.model_uri.open_searcher`)."""

from __future__ import annotations

from amnet.ops.registry.model_uri import open_searcher


def main_search(argv: list[str] | None = None) -> int:
    """``amnet search`` (:func:`amnet.search.cli.main`)."""
    from amnet.search import cli

    return cli.main(argv, load=open_searcher)


def main_serve(argv: list[str] | None = None) -> int:
    """``amnet serve`` (:func:`amnet.search.server.main`)."""
    from amnet.search import server

    return server.main(argv, load=open_searcher)


if __name__ == "__main__":
    from amnet.logs import setup

    setup()
    raise SystemExit(main_search())

"""The searcher's change parsing (:meth:`amnet.search.searcher.Searcher.parse_changes`, behind ``amnet
search --set``, ``amnet serve`` and the servable model): attribute names and values from the user.

Any changes give (attribute, value) index pairs of the vocabulary, and a search with them, or one
:class:`AmnetError` naming the unknown attribute or value (or saying changes must be a mapping); never
another error.
"""

from __future__ import annotations

from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from amnet.errors import AmnetError
from tests.property.inputs import EXAMPLES, assert_names, mostly, text
from tests.property.search_inputs import json_values, pair


def changes() -> st.SearchStrategy[object]:
    """Mostly a mapping of (attribute, value) pairs, values None (skipped) at times; else any value."""
    mapping = st.lists(mostly(pair(), st.tuples(text(10), st.none()), 6), max_size=3).map(dict)
    return mostly(mapping, st.one_of(json_values(), st.tuples(text(4)), st.sets(text(4), max_size=2)), 4)


@settings(max_examples=EXAMPLES, deadline=None)
@given(changes(), st.integers(0, 39))
@example(["color"], 0)
@example({"color": ["red"]}, 0)
@example({None: "red"}, 0)
@example({1: 2}, 0)
def test_changes_parse_to_pairs_or_name_the_bad_one(searcher, changes, row):
    vocab = searcher.vocab
    try:
        pairs = searcher.parse_changes(changes)
    except AmnetError as exc:
        event("refused")
        named = [*changes, *changes.values()] if isinstance(changes, dict) else []
        assert_names(str(exc), "changes", *named)
        return
    event(f"{len(pairs)} changes")
    given_pairs = {k: v for k, v in (changes or {}).items() if v is not None}
    assert len(pairs) == len(given_pairs)
    for (a, v), (name, value) in zip(pairs, given_pairs.items(), strict=True):
        assert vocab.names[a] == str(name) and vocab.attributes[a].values[v] == str(value)
    if row % 4 == 0:  # and search with them (one accepted input in four: a search is the slow part)
        results = searcher.search(searcher.ids[row], changes, k=3)
        assert [r.rank for r in results] == [1, 2, 3] and all(r.image_id != searcher.ids[row] for r in results)

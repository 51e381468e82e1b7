"""Fig. 7's example queries: which queries are picked and what ``examples.parquet`` records about the exact target.

Synthetic: a tiny gallery of solid-colour PIL images written as shards, hand-made rankings, no model.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from amnet.data import shards
from amnet.data.schema import Attribute, Vocabulary
from amnet.errors import AmnetError
from amnet.names import SPLIT_JSON
from amnet.retrieval.examples import build_examples, pick_queries

VOCAB = Vocabulary((Attribute("color", ("red", "blue", "green")), Attribute("sleeve", ("long", "short"))))


def jpeg(rgb: tuple[int, int, int], size: tuple[int, int] = (24, 32)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, rgb).save(buf, format="JPEG")
    return buf.getvalue()


def query_frame(ids, changes, target_ids=None) -> pd.DataFrame:
    df = pd.DataFrame({"image_id": ids, "num_changes": changes})
    if target_ids is not None:
        df["target_id"] = pd.array(target_ids, dtype="string")
    return df


# ------------------------------------------------------------------------------------ pick_queries
def test_pick_queries_without_target_ids_takes_the_first_by_image_id():
    df = query_frame(["q5", "q1", "q4", "q2", "q3", "q6"], [1, 1, 2, 1, 2, 2])
    # one-attribute by id: q1 (row 1), q2 (row 3), q5 (row 0); two-attribute: q3 (row 4), q4 (row 2)
    assert pick_queries(df, one=2, two=2) == [1, 3, 4, 2]
    assert pick_queries(df.iloc[::-1].reset_index(drop=True), one=2, two=2) == [4, 2, 1, 3]  # same ids


def test_pick_queries_prefers_queries_with_an_exact_target():
    df = query_frame(["q5", "q1", "q4", "q2", "q3", "q6", "q7"], [1, 1, 2, 1, 2, 2, 1],
                     [None, None, None, "g2", "g3", None, "g7"])
    # one-attribute with a target: q2 (row 3), q7 (row 6) before q1/q5; two-attribute: q3 (row 4) first
    assert pick_queries(df, one=2, two=1) == [3, 6, 4]
    # too few target queries: the rest of the group fills up by image id
    assert pick_queries(df, one=3, two=2) == [3, 6, 1, 4, 2]
    # an all-null target_id column is the plain choice
    plain = query_frame(list(df["image_id"]), list(df["num_changes"]), [None] * 7)
    assert pick_queries(plain, one=2, two=1) == pick_queries(df.drop(columns="target_id"), one=2, two=1) == [1, 3, 4]


def test_pick_queries_accepts_object_columns_with_nan():
    df = pd.DataFrame({"image_id": ["b", "a", "c"], "num_changes": [1, 1, 1],
                       "target_id": np.array([np.nan, None, "t"], dtype=object)})
    assert pick_queries(df, one=2, two=0) == [2, 1]


# ------------------------------------------------------------------------------------ build_examples
COLOURS = [(255, 0, 0), (0, 0, 255), (0, 255, 0), (255, 255, 0), (0, 255, 255), (255, 0, 255), (90, 90, 90),
           (200, 120, 40)]


@pytest.fixture
def split(tmp_path):
    gallery = pd.DataFrame({"image_id": [f"g{i}" for i in range(len(COLOURS))],
                            "image_bytes": [jpeg(c) for c in COLOURS],
                            "labels": [[i % 3, i % 2] for i in range(len(COLOURS))]})
    shards.write_shards(gallery, str(tmp_path / "gallery"), shard_size=3)
    (tmp_path / SPLIT_JSON).write_text(json.dumps({"config": {"shard_size": 3}}))
    return str(tmp_path), gallery


def test_build_examples_marks_the_exact_target_and_reads_its_thumbnail(split):
    root, gallery = split
    queries = pd.DataFrame({
        "image_id": ["qa", "qb", "qc"], "num_changes": [1, 1, 2],
        "image_bytes": [jpeg((10, 10, 10)), jpeg((20, 20, 20)), jpeg((30, 30, 30))],
        "labels": [[0, 0], [1, 1], [2, 0]], "target": [[1, 0], [2, 1], [0, 1]],
        "changed": [[0], [0], [0, 1]],
        "target_id": pd.array(["g3", None, "g7"], dtype="string"),
    })
    ranked = np.array([[0, 3, 1, 2, 4, 5], [3, 2, 1, 0, 4, 5], [0, 1, 2, 4, 5, 6]])  # qc's target g7: not retrieved
    hits = np.zeros(ranked.shape, dtype=bool)
    hits[0, 1] = True
    labels = np.array(list(gallery["labels"]))
    df = build_examples(root, queries, [0, 1, 2], ranked, hits, gallery["image_id"].to_numpy(), labels, VOCAB, top=5)
    assert {"query_id", "num_changes", "manipulation", "query_thumb", "result_ids", "result_thumbs", "result_hits",
            "result_notes", "target_id", "target_thumb", "result_exact"} <= set(df.columns)
    assert df["target_id"].tolist()[0] == "g3" and pd.isna(df["target_id"].iloc[1]) and df["target_id"].iloc[2] == "g7"
    for ids, exact, target in zip(df["result_ids"], df["result_exact"], df["target_id"], strict=True):
        assert exact == [not pd.isna(target) and i == target for i in ids]
    assert df["result_exact"].tolist() == [[False, True, False, False, False], [False] * 5, [False] * 5]
    assert df["result_ids"].iloc[1][0] == "g3"  # qb retrieves g3 but names no target: not exact
    # the thumbnails are of the target images themselves (g3 is yellow, g7 is orange-brown), even unretrieved
    assert df["target_thumb"].iloc[1] is None
    for q, g in ((0, 3), (2, 7)):
        pixel = np.asarray(Image.open(io.BytesIO(df["target_thumb"].iloc[q])).convert("RGB"))[8, 8].astype(int)
        assert np.abs(pixel - COLOURS[g]).max() < 30, (q, pixel)
    # round trip through Parquet keeps the types
    out = f"{root}/examples.parquet"
    shards.write_table(out, df)
    back = pd.read_parquet(out)
    assert [list(map(bool, e)) for e in back["result_exact"]] == df["result_exact"].tolist()
    assert back["target_id"].iloc[0] == "g3" and back["target_thumb"].iloc[1] is None


def test_build_examples_without_target_ids_has_null_targets(split):
    root, gallery = split
    queries = pd.DataFrame({"image_id": ["qa"], "num_changes": [1], "image_bytes": [jpeg((1, 2, 3))],
                            "labels": [[0, 0]], "target": [[1, 0]], "changed": [[0]]})
    ranked = np.array([[0, 3, 1, 2, 4]])
    df = build_examples(root, queries, [0], ranked, np.zeros((1, 5), bool), gallery["image_id"].to_numpy(),
                        np.array(list(gallery["labels"])), VOCAB)
    assert pd.isna(df["target_id"].iloc[0]) and df["target_thumb"].iloc[0] is None
    assert df["result_exact"].iloc[0] == [False] * 5


def test_build_examples_names_a_target_missing_from_the_gallery(split):
    root, gallery = split
    queries = pd.DataFrame({"image_id": ["qa"], "num_changes": [1], "image_bytes": [jpeg((1, 2, 3))],
                            "labels": [[0, 0]], "target": [[1, 0]], "changed": [[0]],
                            "target_id": pd.array(["elsewhere"], dtype="string")})
    with pytest.raises(AmnetError, match="elsewhere"):
        build_examples(root, queries, [0], np.array([[0, 1, 2, 3, 4]]), np.zeros((1, 5), bool),
                       gallery["image_id"].to_numpy(), np.array(list(gallery["labels"])), VOCAB)

"""Search interface: exact results equal brute force, ivf / pq / hnsw recall, auto choice, save/load round trip."""

import logging

import numpy as np
import pytest

from amnet.retrieval.index import (
    AUTO_THRESHOLD,
    DEFAULT_K_FACTOR,
    DEFAULT_NPROBE,
    EXACT_BUDGET,
    EXACT_OVERHEAD,
    ExactIndex,
    HNSWIndex,
    Index,
    IVFIndex,
    PQRefineIndex,
    build_index,
    default_pq_m,
    index_params,
    load_index,
    recall_at_k,
    resolve_kind,
    save_index,
)


def _data(n: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def _clustered(n: int, dim: int = 32, seed: int = 0, centres: int = 50) -> np.ndarray:
    """A Gaussian mixture (like benchmarks/search.py's clustered features): ``centres`` shared across seeds."""
    means = np.random.default_rng(123).random((centres, dim))
    rng = np.random.default_rng(seed)
    return (means[rng.integers(centres, size=n)] + 0.05 * rng.standard_normal((n, dim))).astype(np.float32)


def _brute_force(gallery: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    dist = np.linalg.norm(queries[:, None, :].astype(np.float64) - gallery[None, :, :], axis=-1)
    ids = np.argsort(dist, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(dist, ids, axis=1), ids


def test_exact_index_matches_brute_force_with_l2_distances():
    gallery, queries = _data(500), _data(20, seed=1)
    index = build_index(gallery)
    assert isinstance(index, ExactIndex) and isinstance(index, Index)
    assert index.kind == "exact" and index.ntotal == 500
    distances, ids = index.search(queries, 10)
    assert distances.dtype == np.float32 and ids.dtype == np.int64 and ids.shape == (20, 10)
    want_dist, want_ids = _brute_force(gallery, queries, 10)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_allclose(distances, want_dist, rtol=1e-4)  # Euclidean, not squared


def test_unfilled_slots_are_minus_one_and_inf():
    index = ExactIndex(4)
    index.add(_data(3, dim=4))
    distances, ids = index.search(_data(2, dim=4, seed=3), 5)
    assert (ids[:, 3:] == -1).all() and np.isinf(distances[:, 3:]).all()
    assert np.isfinite(distances[:, :3]).all()


def test_wrong_dimension_is_rejected():
    index = build_index(_data(10))
    with pytest.raises(ValueError, match="shape"):
        index.search(_data(2, dim=8), 1)


def test_ivf_recall_is_reasonable():
    gallery, queries = _data(4000), _data(100, seed=2)
    index = build_index(gallery, kind="ivf")  # unclustered data: the hard case for ivf
    assert isinstance(index, IVFIndex) and index.kind == "ivf"
    assert index.nlist == round(4 * np.sqrt(4000)) and index.nprobe == DEFAULT_NPROBE
    _, ids = index.search(queries, 10)
    _, want = _brute_force(gallery, queries, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, want, strict=True)])
    assert recall > 0.85


def test_pq_candidates_are_approximate_but_distances_exact():
    gallery, queries = _data(4000, dim=32), _data(100, dim=32, seed=2)
    index = build_index(gallery, kind="pq")
    assert isinstance(index, PQRefineIndex) and index.kind == "pq" and index.k_factor == DEFAULT_K_FACTOR
    distances, ids = index.search(queries, 10)
    want_dist, want = _brute_force(gallery, queries, 10)
    recall = recall_at_k(index, build_index(gallery), queries, 10)
    assert recall == np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, want, strict=True)])
    assert recall > 0.95  # 200 re-ranked candidates per top-10 over unstructured data
    exact_rows = ids == want  # where the candidate is right, its distance is the exact one
    np.testing.assert_allclose(distances[exact_rows], want_dist[exact_rows], rtol=1e-4)
    assert (np.diff(distances, axis=1) >= 0).all()


def test_pq_sub_quantizers_cover_every_dimension():
    assert [default_pq_m(d) for d in (256, 32, 4096, 7, 1, 36, 37, 514)] == [128, 16, 256, 7, 1, 18, 19, 172]
    with pytest.raises(ValueError, match="m must be between"):
        PQRefineIndex(30, m=31)


def test_pq_pads_a_prime_dimension_instead_of_one_sub_quantizer():
    gallery, queries = _data(4000, dim=37), _data(50, dim=37, seed=2)
    index = build_index(gallery, kind="pq")
    assert isinstance(index, PQRefineIndex) and index.m == 19  # two dimensions each, one zero-padded
    assert recall_at_k(index, build_index(gallery), queries, 10) > 0.95
    distances, ids = index.search(queries, 10)
    want_dist, want = _brute_force(gallery, queries, 10)
    np.testing.assert_allclose(distances[ids == want], want_dist[ids == want], rtol=1e-4)  # padding keeps L2


def test_auto_kind_switches_at_threshold():
    assert resolve_kind("auto", AUTO_THRESHOLD - 1) == "exact"
    assert resolve_kind("auto", AUTO_THRESHOLD) == "pq"
    assert build_index(_data(100), kind="auto").kind == "exact"
    assert build_index(_data(10), kind="pq").kind == "exact"  # too few vectors to train a quantizer
    with pytest.raises(ValueError, match="unknown index kind"):
        build_index(_data(10), kind="annoy")


def test_auto_stays_exact_for_small_dimensions_under_the_budget():
    for dim in (8, 36, 37, 64):  # the attribute space: C = the number of attribute values
        limit = EXACT_BUDGET // (dim + EXACT_OVERHEAD)
        assert limit > AUTO_THRESHOLD
        assert resolve_kind("auto", limit, dim) == "exact"
        assert resolve_kind("auto", limit + 1, dim) == "pq"
    assert resolve_kind("auto", 176_000, 36) == "exact" and resolve_kind("auto", 1_000_000, 36) == "pq"
    assert resolve_kind("auto", AUTO_THRESHOLD - 1, 4096) == "exact"  # the 50k floor still holds for wide vectors
    assert resolve_kind("auto", AUTO_THRESHOLD, 256) == "pq"
    assert resolve_kind("auto", 100_000) == "pq"  # callers that do not pass the dimension: the floor only
    index = build_index(np.zeros((AUTO_THRESHOLD + 10, 36), dtype=np.float32), kind="auto")
    assert index.kind == "exact"


def test_hnsw_reaches_recall_on_clustered_features():
    gallery, queries = _clustered(3000), _clustered(100, seed=1)
    index = build_index(gallery, kind="hnsw")
    assert isinstance(index, HNSWIndex) and index.kind == "hnsw" and index.ntotal == 3000
    tuning = index.tuning
    assert tuning["reached"] and tuning["recall_low"] >= 0.99 and tuning["ef_search"] == index.ef_search
    assert recall_at_k(index, build_index(gallery), queries, 20) >= 0.99
    distances, ids = index.search(queries, 20)
    want_dist, want = _brute_force(gallery, queries, 20)
    np.testing.assert_allclose(distances[ids == want], want_dist[ids == want], rtol=1e-4)  # exact distances
    params = index_params(index)
    assert params["kind"] == "hnsw" and params["ef_search"] == index.ef_search and params["tuning"] == tuning
    _, ids = index.search(gallery[:5], 1)  # ids follow the rows, the held-out tail included
    assert ids[:, 0].tolist() == [0, 1, 2, 3, 4]
    assert index.search(gallery[-3:], 1)[1][:, 0].tolist() == [2997, 2998, 2999]


def test_hnsw_ef_search_is_chosen_by_the_recall_target(caplog):
    gallery, held_out = _data(3000, dim=24), _data(100, dim=24, seed=5)  # unstructured: recall needs effort
    index = HNSWIndex(24)
    index.add(gallery)
    exact = build_index(gallery)
    low = index.tune(held_out, target=0.8)["ef_search"]
    assert recall_at_k(index, exact, held_out, 20) >= 0.8
    high = index.tune(held_out, target=0.99)
    assert high["reached"] and high["ef_search"] > low and high["recall"] >= high["recall_low"] >= 0.99
    assert recall_at_k(index, exact, held_out, 20) >= 0.99
    half = index.tune(held_out, target=0.99, max_ef=high["ef_search"] // 2)
    assert not half["reached"]  # the smallest passing value was chosen, not any large one
    with caplog.at_level(logging.WARNING, logger="amnet.retrieval.index"):
        missed = index.tune(held_out, target=1.01, max_ef=40)
    assert not missed["reached"] and missed["ef_search"] == 40 and "target" in caplog.text


def test_hnsw_on_tiny_galleries():
    index = build_index(_data(5), kind="hnsw")
    assert index.kind == "hnsw" and index.tuning["reached"]
    distances, ids = index.search(_data(2, seed=9), 8)
    assert (ids[:, 5:] == -1).all() and np.isinf(distances[:, 5:]).all()


@pytest.mark.parametrize("kind", ["exact", "ivf", "pq", "pq37", "hnsw"])
def test_save_load_round_trip(tmp_path, kind):
    gallery, queries = _data(1000, dim=37 if kind == "pq37" else 16), _data(5, dim=37 if kind == "pq37" else 16, seed=4)
    kind = kind.removesuffix("37")
    index = build_index(gallery, kind=kind, nprobe=7)
    uri = str(tmp_path / "sub" / "gallery.faiss")
    save_index(index, uri)
    loaded = load_index(uri)
    assert type(loaded) is type(index) and loaded.ntotal == 1000
    if kind == "ivf":
        assert loaded.nprobe == 7
    if kind == "pq":
        assert loaded.k_factor == DEFAULT_K_FACTOR and loaded.m == index.m
    if kind == "hnsw":  # the tuned efSearch is stored with the graph
        assert loaded.ef_search == index.ef_search and index_params(loaded)["ef_search"] == index.ef_search
        assert (loaded.m, loaded.ef_construction) == (index.m, index.ef_construction)
    for got, want in zip(loaded.search(queries, 5), index.search(queries, 5), strict=True):
        np.testing.assert_array_equal(got, want)


def test_faiss_threads_follow_omp_num_threads(monkeypatch):
    import faiss

    before = faiss.omp_get_max_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    try:
        ExactIndex(4)
        assert faiss.omp_get_max_threads() == 1
    finally:
        faiss.omp_set_num_threads(before)

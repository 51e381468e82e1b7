"""Search interface: exact results equal brute force, ivf / pq recall, auto choice, save/load round trip."""

import numpy as np
import pytest

from amnet.retrieval.index import (
    AUTO_THRESHOLD,
    DEFAULT_K_FACTOR,
    DEFAULT_NPROBE,
    ExactIndex,
    Index,
    IVFIndex,
    PQRefineIndex,
    build_index,
    default_pq_m,
    load_index,
    recall_at_k,
    resolve_kind,
    save_index,
)


def _data(n: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


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


def test_pq_sub_quantizers_divide_the_dimension():
    assert [default_pq_m(d) for d in (256, 32, 4096, 7, 1)] == [128, 16, 256, 1, 1]
    with pytest.raises(ValueError, match="m must divide"):
        PQRefineIndex(30, m=7)


def test_auto_kind_switches_at_threshold():
    assert resolve_kind("auto", AUTO_THRESHOLD - 1) == "exact"
    assert resolve_kind("auto", AUTO_THRESHOLD) == "pq"
    assert build_index(_data(100), kind="auto").kind == "exact"
    assert build_index(_data(10), kind="pq").kind == "exact"  # too few vectors to train a quantizer
    with pytest.raises(ValueError, match="unknown index kind"):
        build_index(_data(10), kind="hnsw")


@pytest.mark.parametrize("kind", ["exact", "ivf", "pq"])
def test_save_load_round_trip(tmp_path, kind):
    gallery, queries = _data(1000), _data(5, seed=4)
    index = build_index(gallery, kind=kind, nprobe=7)
    uri = str(tmp_path / "sub" / "gallery.faiss")
    save_index(index, uri)
    loaded = load_index(uri)
    assert type(loaded) is type(index) and loaded.ntotal == 1000
    if kind == "ivf":
        assert loaded.nprobe == 7
    if kind == "pq":
        assert loaded.k_factor == DEFAULT_K_FACTOR
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

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ingredients_model.metrics.matching import greedy_match, summarize


def test_greedy_takes_highest_pair_first_not_row_best():
    # ref 0 prefers face 0 (0.8) but ref 1 matches face 0 better (0.9): greedy gives face 0 to ref 1.
    sim = np.array([[0.8, 0.7], [0.9, 0.1]])
    fm = greedy_match(sim)
    assert [(m.ref, m.face) for m in fm.matches] == [(0, 1), (1, 0)]
    assert fm.min_similarity == pytest.approx(0.7)
    assert fm.missing == () and fm.extra == ()


def test_more_faces_than_refs_leaves_extra_faces():
    sim = np.array([[0.2, 0.6, 0.5]])
    fm = greedy_match(sim)
    assert fm.face_of(0) == 1
    assert fm.extra == (0, 2)
    assert fm.min_similarity == pytest.approx(0.6)


def test_fewer_faces_than_refs_reports_missing_and_min_over_matches_only():
    sim = np.array([[0.3], [0.9], [0.5]])
    fm = greedy_match(sim)
    assert fm.face_of(1) == 0
    assert fm.missing == (0, 2)
    assert fm.min_similarity == pytest.approx(0.9)
    assert fm.similarity_of(0) is None


def test_no_faces():
    fm = greedy_match(np.zeros((2, 0)))
    assert fm.matches == () and fm.min_similarity is None and fm.missing == (0, 1)


def test_rejects_bad_input():
    with pytest.raises(ValueError):
        greedy_match(np.zeros(3))
    with pytest.raises(ValueError):
        greedy_match(np.array([[np.nan]]))


def test_summarize_strict_every_person_every_frame():
    frames = [
        greedy_match(np.array([[0.8, 0.1], [0.2, 0.6]])),  # min 0.6
        greedy_match(np.array([[0.4], [-0.5]])),  # ref 0 matched 0.4, ref 1 missing -> 0
        greedy_match(np.zeros((2, 0))),  # no faces: both missing -> 0
        greedy_match(np.array([[-0.2, 0.9], [0.95, -0.3]])),  # min 0.9
    ]
    s = summarize(frames)
    assert s.face_sim == pytest.approx((0.6 + 0.0 + 0.0 + 0.9) / 4)
    assert [f.strict_score for f in frames] == pytest.approx([0.6, 0.0, 0.0, 0.9])
    assert s.per_ref[0] == pytest.approx((0.8 + 0.4 + 0.9) / 3)
    assert s.per_ref[1] == pytest.approx((0.6 + 0.95) / 2)
    assert s.frames_missing == (1, 2)
    assert s.frames == 4 and s.frames_with_faces == 3
    assert s.max_detections == 2 and s.mean_detections == pytest.approx(1.25)


def test_summarize_negative_similarities_clamp_to_zero():
    s = summarize([greedy_match(np.array([[-0.4]]))])
    assert s.face_sim == 0.0 and s.per_ref == (0.0,)


def _brute_force_min(sim: np.ndarray) -> float:
    """Reference implementation: repeatedly take the global maximum, strike its row and column."""
    sim = sim.astype(float).copy()
    values = []
    for _ in range(min(sim.shape)):
        r, f = np.unravel_index(np.argmax(sim), sim.shape)
        values.append(sim[r, f])
        sim[r, :] = -np.inf
        sim[:, f] = -np.inf
    return min(values)


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(1, 5)), elements=st.floats(-1, 1)))
def test_greedy_is_one_to_one_and_matches_reference(sim):
    fm = greedy_match(sim)
    refs = [m.ref for m in fm.matches]
    faces = [m.face for m in fm.matches]
    assert len(set(refs)) == len(refs) == min(sim.shape)
    assert len(set(faces)) == len(faces)
    assert fm.min_similarity == pytest.approx(_brute_force_min(sim))
    for m in fm.matches:
        assert m.similarity == sim[m.ref, m.face]

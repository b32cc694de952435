"""Property-based tests: any corruption of a candidate's JSON gives a CandidateError (never a traceback from
inside a library), and valid candidates always round-trip."""
import json

import numpy as np
from hypothesis import HealthCheck, given, settings, strategies as st

from hao.errors import CandidateError
from hao.space import get_space

SPACE = get_space("resnet-cifar")
GOOD = SPACE.sample(np.random.default_rng(0))
GOOD_JSON = GOOD.to_json()

json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(),
                           lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
                           max_leaves=8)


def _load(s):
    try:
        c = SPACE.candidate_from_json(s)
    except CandidateError:
        return None
    return c


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, len(GOOD_JSON) - 1), st.integers(1, 8), st.text(max_size=4))
def test_text_corruption_only_candidate_errors(pos, length, repl):
    bad = GOOD_JSON[:pos] + repl + GOOD_JSON[pos + length:]
    c = _load(bad)
    if c is not None:
        assert SPACE.validate(c) is c


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(SPACE.decision_names), json_values)
def test_value_corruption_only_candidate_errors(name, value):
    d = json.loads(GOOD_JSON)
    d["choices"][name] = value
    c = _load(json.dumps(d))
    if c is not None:
        assert c[name] in next(x.options for x in SPACE.decisions() if x.name == name)


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_arbitrary_json_only_candidate_errors(doc):
    _load(json.dumps(doc))


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_seeded_samples_round_trip(seed):
    c = SPACE.sample(np.random.default_rng(seed))
    assert SPACE.candidate_from_json(c.to_json()) == c

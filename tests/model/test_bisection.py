from hypothesis import given
from hypothesis import strategies as st

from planner.model.bisection import turning_point


@given(st.floats(1.0, 4.0, exclude_min=True, exclude_max=True), st.sampled_from([0.5, 0.05, 0.005]))
def test_the_turning_point_lies_in_the_narrowed_interval(turn, within):
    calls = []

    def holds(x):
        calls.append(x)
        return x < turn

    lo, hi = turning_point(holds, 1.0, 4.0, within)
    assert 1.0 <= lo <= turn <= hi <= 4.0 and hi - lo <= within
    # halving: as many calls as it takes to get from 3 wide to `within`, no more
    assert len(calls) == next(n for n in range(64) if 3.0 / 2 ** n <= within)


def test_an_interval_already_narrow_enough_is_returned_as_it_is():
    assert turning_point(lambda x: 1 / 0, 2.0, 2.001, 0.005) == (2.0, 2.001)

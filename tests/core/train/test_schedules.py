import math
import warnings

import pytest

from scivae.core import KLSchedule, make_schedule
from scivae.errors import ScivaeInputError


def test_constant():
    s = KLSchedule("constant", max_weight=0.7)
    assert s(0) == s(10_000) == 0.7


def test_linear_warmup():
    s = KLSchedule("linear", warmup_steps=100)
    assert [s(0), s(50), s(100), s(1000)] == [0.0, 0.5, 1.0, 1.0]


def test_linear_default_warmup_is_a_quarter_of_the_run():
    s = make_schedule("linear").bind(400)
    assert s.warmup_steps == 100 and s(50) == 0.5 and s(400) == 1.0


def test_cyclical_fu_et_al():
    s = KLSchedule("cyclical", n_cycles=4, ratio=0.5).bind(100)  # period 25, rising over 12.5 steps
    assert s(0) == 0.0
    assert math.isclose(s(5), 0.4)
    assert math.isclose(s(12), 0.96)
    assert s(13) == 1.0 and s(24) == 1.0
    assert s(25) == 0.0 and math.isclose(s(30), 0.4)
    assert s(100) == 1.0


def test_sigmoid():
    s = KLSchedule("sigmoid", center=100, slope=0.1)
    assert math.isclose(s(100), 0.5)
    assert s(0) < 1e-4 and s(200) > 1 - 1e-4
    auto = KLSchedule("sigmoid").bind(400)
    assert auto(0) < 1e-3 and auto(400) > 0.999


def test_warns_when_warmup_outlasts_the_run():
    with pytest.warns(UserWarning, match="longer than the run"):
        KLSchedule("linear", warmup_steps=1000).bind(100)
    with pytest.warns(UserWarning, match="longer than the run"):
        KLSchedule("sigmoid", center=500, slope=0.1).bind(100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        KLSchedule("linear", warmup_steps=100).bind(100)


def test_unknown_schedule():
    with pytest.raises(ScivaeInputError, match="unknown KL schedule"):
        KLSchedule("exponential")

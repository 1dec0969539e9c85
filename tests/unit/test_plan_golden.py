"""The paper grid and the demo plan the jobs, commands and resources recorded in tests/golden/ (no
change in what they plan unless one is meant: then `python tests/support/plan_golden.py --write`, and say why in
the commit)."""

from __future__ import annotations

import pytest

from tests.support import plan_golden


@pytest.mark.parametrize("case", list(plan_golden.CASES))
def test_plan_is_as_recorded(case):
    now = plan_golden.plan(case)
    assert plan_golden.differences(case, now, plan_golden.recorded()[case]) == []

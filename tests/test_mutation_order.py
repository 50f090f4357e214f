"""The order a mutant's tests run in under `make mutation`: cheapest module first, modules kept together."""

import json
from types import SimpleNamespace

import mutation_order


def items(*nodeids):
    return [SimpleNamespace(nodeid=n) for n in nodeids]


def test_a_tests_cost_includes_its_modules_costliest_set_up():
    costs = mutation_order.costs_per_test(
        {
            "tests/a.py::one": {"setup": 3.0, "call": 0.1, "teardown": 0.0},
            "tests/a.py::two": {"setup": 0.0, "call": 0.2},
            "tests/b.py::one": {"setup": 0.0, "call": 1.0},
        }
    )
    assert costs == {"tests/a.py::one": 6.1, "tests/a.py::two": 3.2, "tests/b.py::one": 1.0}


def test_a_mutant_runs_its_cheapest_module_first_and_keeps_each_module_together(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / mutation_order.COSTS).write_text(
        json.dumps(
            {
                "tests/model.py::slow": {"setup": 5.0, "call": 0.1},
                "tests/model.py::fast": {"call": 0.1},
                "tests/unit.py::b": {"call": 9.0},  # dearer than the model tests, yet run with its module
                "tests/unit.py::a": {"call": 0.2},
            }
        )
    )
    order = items(
        "tests/model.py::slow", "tests/unit.py::b", "tests/model.py::fast", "tests/new.py::x", "tests/unit.py::a"
    )
    monkeypatch.setenv("MUTANT_UNDER_TEST", "ulip2_pipeline.atomic.x_write_parquet__mutmut_1")
    mutation_order.cheapest_first(order)
    assert [i.nodeid for i in order] == [
        "tests/unit.py::a",
        "tests/unit.py::b",
        "tests/model.py::fast",
        "tests/model.py::slow",
        "tests/new.py::x",  # no recorded cost: last
    ]


def test_outside_a_mutant_session_the_order_is_left_alone(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / mutation_order.COSTS).write_text(
        json.dumps({"tests/a.py::b": {"call": 0.0}, "tests/a.py::a": {"call": 9.0}})
    )
    for value in ("stats", "fail", ""):
        monkeypatch.setenv("MUTANT_UNDER_TEST", value)
        order = items("tests/a.py::a", "tests/a.py::b")
        mutation_order.cheapest_first(order)
        assert [i.nodeid for i in order] == ["tests/a.py::a", "tests/a.py::b"]

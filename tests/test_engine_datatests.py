"""8. Data tests: generic tests from YAML, singular tests, severity, `dataproj test` and `dataproj build`."""

from __future__ import annotations

from conftest import MakeProject

SHOP = {
    "seeds/raw_customers.csv": "id,name,tier\n1,Ann,gold\n2,Bob,silver\n3,Cy,gold\n",
    "seeds/raw_orders.csv": ("id,customer_id,status,amount,quantity\n"
                             "1,1,placed,10,1\n"
                             "2,2,shipped,20,2\n"
                             "3,3,placed,,3\n"
                             "3,9,lost,40,0\n"
                             "5,1,placed,150,1\n"),
    "models/customers.sql": "{{ config(materialized='table') }}\nselect * from {{ ref('raw_customers') }}\n",
    "models/orders.sql": "{{ config(materialized='table') }}\nselect * from {{ ref('raw_orders') }}\n",
    "models/schema.yml": """\
        models:
          - name: customers
            columns:
              - name: id
                tests: [unique, not_null]
              - name: tier
                tests:
                  - accepted_values:
                      values: [gold, silver]
          - name: orders
            tests:
              - expression: "quantity > 0"
            columns:
              - name: id
                tests: [unique]
              - name: customer_id
                tests:
                  - relationships:
                      to: ref('customers')
                      field: id
              - name: status
                tests:
                  - accepted_values: {values: [placed, shipped]}
                  - not_null:
                      config:
                        where: "status != 'lost'"
              - name: amount
                tests:
                  - not_null:
                      severity: warn
        """,
    "tests/assert_no_big_orders.sql": "select id, amount from {{ ref('orders') }} where amount > 100\n",
}


def test_generic_and_singular_tests_report_failures_and_failing_rows(make_project: MakeProject) -> None:
    project = make_project(SHOP)
    project.ok("seed")
    project.ok("run")
    result = project.cli("test")
    assert result.code == 1
    results = {r["name"]: r for r in project.run_results()["results"]}
    assert {r["resource_type"] for r in results.values()} == {"test"}
    assert {name: (r["status"], r["failures"]) for name, r in results.items()} == {
        "unique_customers_id": ("pass", 0),
        "not_null_customers_id": ("pass", 0),
        "accepted_values_customers_tier": ("pass", 0),
        "expression_orders": ("fail", 1),
        "unique_orders_id": ("fail", 1),
        "relationships_orders_customer_id": ("fail", 1),
        "accepted_values_orders_status": ("fail", 1),
        "not_null_orders_status": ("pass", 0),
        "not_null_orders_amount": ("warn", 1),
        "assert_no_big_orders": ("fail", 1),
    }
    assert results["unique_orders_id"]["failing_rows"] == [{"unique_field": 3, "n_records": 2}]
    assert results["relationships_orders_customer_id"]["failing_rows"] == [{"from_field": 9}]
    assert results["accepted_values_orders_status"]["failing_rows"] == [{"value_field": "lost", "n_records": 1}]
    assert results["not_null_orders_amount"]["failing_rows"] == [
        {"id": 3, "customer_id": 3, "status": "placed", "amount": None, "quantity": 3}]
    assert results["expression_orders"]["failing_rows"] == [
        {"id": 3, "customer_id": 9, "status": "lost", "amount": 40, "quantity": 0}]
    assert results["assert_no_big_orders"]["failing_rows"] == [{"id": 5, "amount": 150}]
    assert results["unique_orders_id"]["message"] == "unique on orders.id: 1 failing row"
    # The first failing rows are shown in the output.
    assert '{"unique_field": 3, "n_records": 2}' in result.out
    assert '{"id": 5, "amount": 150}' in result.out
    assert '{"from_field": 9}' in result.out


def test_only_warnings_exit_zero(make_project: MakeProject) -> None:
    project = make_project({
        "models/nums.sql": "select * from (values (1), (1), (null)) as t(n)\n",
        "models/schema.yml": """\
            models:
              - name: nums
                columns:
                  - name: n
                    tests:
                      - unique: {config: {severity: warn}}
                      - not_null: {severity: warn}
            """,
        "tests/no_ones.sql": "{{ config(severity='warn') }}\nselect * from {{ ref('nums') }} where n = 1\n",
    })
    result = project.cli("build")
    assert result.code == 0, result.text
    assert project.statuses() == {"nums": "success", "unique_nums_n": "warn", "not_null_nums_n": "warn",
                                  "no_ones": "warn"}


def test_first_failing_rows_are_limited(make_project: MakeProject) -> None:
    project = make_project({
        "models/nums.sql": "select range as n from range(7)\n",
        "tests/all_fail.sql": "select n from {{ ref('nums') }} order by n\n",
    })
    assert project.cli("build").code == 1
    [test] = [r for r in project.run_results()["results"] if r["name"] == "all_fail"]
    assert test["failures"] == 7
    assert test["failing_rows"] == [{"n": 0}, {"n": 1}, {"n": 2}, {"n": 3}, {"n": 4}]
    assert test["message"] == "singular test tests/all_fail.sql: 7 failing rows"


GATED = {
    "seeds/raw.csv": "id,v\n1,10\n1,11\n2,20\n",
    "models/base.sql": "{{ config(materialized='table') }}\nselect * from {{ ref('raw') }}\n",
    "models/base_report.sql": "select count(*) as n from {{ ref('base') }}\n",
    "models/base_report_child.sql": "select n from {{ ref('base_report') }}\n",
    "models/warned.sql": "select * from {{ ref('raw') }}\n",
    "models/warned_child.sql": "select count(*) as n from {{ ref('warned') }}\n",
    "models/checked.sql": "select sum(v) as total from {{ ref('raw') }}\n",
    "models/checked_child.sql": "select total from {{ ref('checked') }}\n",
    "models/schema.yml": """\
        models:
          - name: base
            columns:
              - name: id
                tests: [unique]
          - name: warned
            columns:
              - name: id
                tests:
                  - unique: {severity: warn}
        """,
    "tests/checked_is_small.sql": "select * from {{ ref('checked') }} where total > 5\n",
}


def test_build_runs_in_dag_order_and_a_failing_test_skips_what_is_downstream(make_project: MakeProject) -> None:
    project = make_project(GATED)
    result = project.cli("build")
    assert result.code == 1
    results = project.run_results()["results"]
    statuses = {r["name"]: r["status"] for r in results}
    assert statuses == {
        "raw": "success",
        "base": "success", "unique_base_id": "fail", "base_report": "skipped", "base_report_child": "skipped",
        "warned": "success", "unique_warned_id": "warn", "warned_child": "success",
        "checked": "success", "checked_is_small": "fail", "checked_child": "skipped",
    }
    order = [r["name"] for r in results]
    for before, after in [("raw", "base"), ("base", "unique_base_id"), ("warned", "unique_warned_id"),
                          ("unique_warned_id", "warned_child"), ("checked", "checked_is_small")]:
        assert order.index(before) < order.index(after)
    skipped = {r["name"]: r["message"] for r in results if r["status"] == "skipped"}
    assert "unique_base_id" in skipped["base_report"]
    assert "checked_is_small" in skipped["checked_child"]
    assert set(project.relations()) == {"raw", "base", "warned", "warned_child", "checked"}


def test_test_command_runs_only_the_selected_tests(make_project: MakeProject) -> None:
    project = make_project(SHOP)
    project.ok("seed")
    project.ok("run")
    # Excluding orders also drops the tests that touch it (relationships_orders_customer_id).
    project.ok("test", "--select", "customers", "--exclude", "orders")
    assert set(project.statuses()) == {"unique_customers_id", "not_null_customers_id",
                                       "accepted_values_customers_tier"}

"""Every stage runs on a hand-written raw folder of a few rows, as a new user's first try looks."""

from __future__ import annotations

import json

import nbformat
import pytest

from conftest import ecompipe

FILES = {
    "customers.csv": """customer_id,first_name,last_name,email,phone,city,state,country,signup_date
1,Ada,Lovelace,ada@example.com,,London,,United Kingdom,2024-01-05
2,Alan,Turing,alan@example.com,,Wilmslow,,United Kingdom,2024-02-10
3,Grace,Hopper,grace@example.com,,Arlington,VA,United States,2024-03-15

""",
    "products.csv": """product_id,product_name,category,unit_price,unit_cost
1,Analytical Engine,Computers,999.00,600.00
2,Punched Cards,Books,4.50,1.00
""",
    "orders.csv": """order_id,customer_id,order_ts,status,payment_method
1,1,2024-06-01 10:00:00Z,delivered,paypal
2,2,2024-06-15 12:30:00Z,shipped,credit_card
3,3,2024-06-20 09:15:00Z,placed,credit_card
""",
    "order_items.csv": """order_id,line_no,product_id,quantity,unit_price,discount
1,1,1,1,999.00,0
1,2,2,10,4.50,0
2,1,2,3,4.50,1.00
3,1,2,1,4.50,0
""",
}


@pytest.fixture(scope="module")
def tiny_run(isolated_settings, tmp_path_factory):
    raw = tmp_path_factory.mktemp("handwritten")
    for name, text in FILES.items():
        (raw / name).write_text(text)
    done = ecompipe("run", "--raw-dir", str(raw), "--as-of", "2024-06-30", "--run-id", "tiny")
    return done, isolated_settings.run_dir("tiny")


def test_the_whole_pipeline_runs_on_a_few_hand_written_rows(tiny_run):
    done, run_dir = tiny_run
    assert done.returncode == 0, done.stderr
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "succeeded" and manifest["error"] is None
    assert manifest["row_counts"]["customers"] == 3 and manifest["row_counts"]["order_items"] == 4
    for stage in manifest["stages"]:
        executed = nbformat.read(run_dir.parent.parent.parent / stage["notebook"], as_version=4)
        code = [c for c in executed.cells if c.cell_type == "code"]
        assert all(c.execution_count for c in code), f"{stage['name']}: a cell did not run"
        assert not [o for c in code for o in c.outputs if o.output_type == "error"], stage["name"]


def test_a_raw_dir_run_records_its_folder_and_as_of_but_no_generator_parameters(tiny_run):
    _, run_dir = tiny_run
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert set(manifest["parameters"]) == {"run_id", "as_of", "increment", "raw_dir", "force", "fail_on"}
    assert manifest["parameters"]["as_of"] == "2024-06-30"
    assert set(manifest["files"]) == set(FILES) and manifest["defects"] == {}
    assert manifest["ingest"]["as_of"] == "2024-06-30" and manifest["ingest"]["scale"] is None
    blank = {f["table"]: f["blank_lines"] for f in manifest["ingest"]["files"]}
    assert blank["customers"] == 1  # the trailing blank line: skipped and counted


def test_empty_charts_say_so_instead_of_failing(tiny_run):
    _, run_dir = tiny_run
    executed = nbformat.read(run_dir / "03_transform.ipynb", as_version=4)
    texts = [o.get("data", {}).get("text/plain", "") for c in executed.cells for o in c.get("outputs", [])]
    images = [o for c in executed.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 5
    assert not any("Error" in t for t in texts)

"""A short headless locust run of client/locustfile.py against a real gateway."""

import csv
import subprocess
import sys

from client.payloads import BAD_UPLOAD_PREFIX

WELL_FORMED = (
    "png 28x28",
    "jpeg photo 1280x960",
    "batch of 8 png",
    "base64 json",
    "read number",
)
RUN_SECONDS = 15


def test_locust_mix_has_no_failures_and_bad_uploads_all_get_4xx(gateway, tmp_path):
    prefix = tmp_path / "locust"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "locust",
            "-f",
            "client/locustfile.py",
            "--headless",
            "-u",
            "8",
            "-r",
            "8",
            "-t",
            f"{RUN_SECONDS}s",
            "--host",
            gateway.url,
            "--csv",
            str(prefix),
            "--only-summary",
            "--loglevel",
            "WARNING",
        ],
        capture_output=True,
        text=True,
        timeout=RUN_SECONDS + 60,
        check=False,
    )
    with open(f"{prefix}_stats.csv", newline="") as stats_file:
        rows = {row["Name"]: row for row in csv.DictReader(stats_file)}
    with open(f"{prefix}_failures.csv", newline="") as failures_file:
        failures = list(csv.DictReader(failures_file))

    assert failures == [], failures
    assert result.returncode == 0, result.stderr[-2000:]
    for name in WELL_FORMED:
        assert int(rows[name]["Request Count"]) > 0, f"no {name} requests were made"
        assert int(rows[name]["Failure Count"]) == 0
    bad = {name: row for name, row in rows.items() if name.startswith(BAD_UPLOAD_PREFIX)}
    # The locustfile counts a bad upload as a success only when it got a 4xx.
    assert sum(int(row["Request Count"]) for row in bad.values()) > 0
    assert all(int(row["Failure Count"]) == 0 for row in bad.values())
    assert int(rows["Aggregated"]["Failure Count"]) == 0
    # Several kinds of malformed upload were tried, not just one.
    assert len(bad) >= 3

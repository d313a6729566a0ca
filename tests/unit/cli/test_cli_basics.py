"""The CLI's first-use basics: global options in either place, money and prices as traders
read them, JSON errors under --json, a version, and no traceback when piped into `head`."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mbt.cli import build_parser, money, price


@pytest.mark.parametrize(
    "argv",
    [
        ["--url", "http://h:1", "signup", "--email", "a@b.c"],
        ["signup", "--url", "http://h:1", "--email", "a@b.c"],
        ["--json", "--url", "http://h:1", "account"],
        ["account", "--json", "--url", "http://h:1"],
    ],
)
def test_global_options_work_before_and_after_the_command(argv: list[str]) -> None:
    ns = build_parser().parse_args(argv)
    assert ns.url == "http://h:1"
    assert ns.json is ("--json" in argv)


def test_money_has_separators_two_decimals_and_signs_for_pnl() -> None:
    assert money("100000") == "$100,000.00"
    assert money("1234.5") == "$1,234.50"
    assert money("-3.1") == "-$3.10"
    assert money("12", signed=True) == "+$12.00" and money("0", signed=True) == "$0.00"
    assert price("185.1") == "185.10" and price("4.200000") == "4.20"
    assert price("0.0525") == "0.0525" and price("") == "-"


def test_errors_under_json_are_json_and_the_version_prints() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "mbt.cli", "--json", "--url", "http://127.0.0.1:9", "clock"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode != 0
    err = json.loads(run.stdout)["error"]
    assert err["exit_code"] == run.returncode and err["message"]
    assert run.stderr == ""  # under --json the error is the JSON on stdout, nothing else
    version = subprocess.run(
        [sys.executable, "-m", "mbt.cli", "--version"], capture_output=True, text=True, timeout=60
    )
    assert version.stdout.startswith("mbt ")

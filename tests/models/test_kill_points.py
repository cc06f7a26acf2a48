"""Specification of the kill points (`models.kill_points`) that the crash-recovery trials use."""

from __future__ import annotations

import subprocess
import sys

import pytest

from models.kill_points import KILL_POINT_VARIABLE, KILL_POINTS, parse_kill_point
from neuraltrade.errors import ConfigError


@pytest.mark.parametrize("text,expected", [("commit", ("commit", 1)), ("before_commit:3", ("before_commit", 3))])
def test_a_point_and_its_count_are_read(text: str, expected: tuple[str, int]) -> None:
    assert parse_kill_point(text) == expected


@pytest.mark.parametrize("text", ["comit", "commit:0", "commit:-1", "commit:two", ":3"])
def test_a_point_that_does_not_exist_or_a_bad_count_is_refused_naming_the_variable(text: str) -> None:
    with pytest.raises(ConfigError, match=KILL_POINT_VARIABLE) as raised:
        parse_kill_point(text)
    assert repr(text) in str(raised.value) and "\n" not in str(raised.value)


def test_a_process_is_killed_the_nth_time_it_reaches_the_point_and_counts_every_point() -> None:
    code = (
        "import sys\n"
        "from models.kill_points import kill_point, reached_points\n"
        "for step in range(5):\n"
        "    kill_point('before_commit')\n"
        "    kill_point('commit')\n"
        "    print(step, reached_points(), flush=True)\n"
    )
    environment = {"PATH": "", KILL_POINT_VARIABLE: "commit:3"}
    finished = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment)

    assert finished.returncode == -9
    assert finished.stdout.splitlines() == [
        "0 {'before_commit': 1, 'commit': 1}",
        "1 {'before_commit': 2, 'commit': 2}",
    ]
    assert set(KILL_POINTS) == {"before_commit", "commit", "index_file"}

"""Result JSON: contract keys, masking, and the 4096-byte termination-message limit."""

from __future__ import annotations

import json

from migrategate.runner import contract
from migrategate.runner.errors import BadInput, Transient
from migrategate.runner.masking import Masker
from migrategate.runner.result import Result, to_json


def test_result_is_masked_and_fits_the_termination_message() -> None:
    result = Result(
        outcome="Failed",
        exit_code=4,
        message="revision 0042 failed: password s3cr3t-Pw rejected " + "x" * 9000,
        applied_revisions=tuple(f"{i:04d}" for i in range(500)),
        warnings=("s3cr3t-Pw " + "w" * 3000,) * 10,
    )
    encoded = to_json(result, Masker(("s3cr3t-Pw",)))
    assert len(encoded.encode()) <= contract.RESULT_MAX_BYTES
    assert "s3cr3t" not in encoded
    data = json.loads(encoded)
    assert data[contract.ResultKey.MESSAGE].startswith("revision 0042 failed: password ***")
    assert len(data[contract.ResultKey.APPLIED_REVISIONS]) == 20
    assert "secrets" not in data


def test_the_step_nearest_a_failure_says_what_its_result_holds() -> None:
    error = Transient("cannot reach app:s3cr3t-Pw@db")
    error.result = Result(driver="psycopg", from_revisions=("0003",))  # set where it failed
    error.record(Result(driver="psycopg"), Masker(("s3cr3t-Pw",)))  # the command's, later
    assert error.result.from_revisions == ("0003",)
    assert error.message == str(error) == "cannot reach app:***@db"
    bare = BadInput("no such revision")
    bare.record(Result(driver="psycopg"), Masker())
    assert bare.result == Result(driver="psycopg")


def test_a_database_ahead_names_the_heads_the_scripts_do_not_know() -> None:
    plain = json.loads(to_json(Result(from_revisions=("0003",)), Masker()))
    assert plain[contract.ResultKey.UNKNOWN_REVISIONS] == []
    ahead = Result().at(("0004c",)).ahead(("0004c",))
    data = json.loads(to_json(ahead, Masker()))
    assert data[contract.ResultKey.UNKNOWN_REVISIONS] == ["0004c"]
    assert data[contract.ResultKey.FROM_REVISIONS] == data[contract.ResultKey.TO_REVISIONS]

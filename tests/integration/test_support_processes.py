"""The test support's own promises that other tests lean on."""

from __future__ import annotations

from tests.support.processes import GatewayProcess


def test_a_line_still_being_written_is_not_read_as_a_log_line():
    gw = GatewayProcess({})  # not started: only its log file is used
    try:
        gw.log_path.write_text('{"msg": "one"}\n{"msg": "two"}\n{"msg": "thr')
        assert gw.logs() == '{"msg": "one"}\n{"msg": "two"}\n'
        assert gw.logs(whole_lines=False).endswith('{"msg": "thr')
        gw.log_path.write_text("")
        assert gw.logs() == ""
    finally:
        gw.log_path.unlink()

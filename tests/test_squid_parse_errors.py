"""A squid.conf squid refuses fails with squid's own reason, not its "Processing:" lines.

The fixtures are squid 5.7's (Debian 12) output of `squid -k parse -f
/dev/stdin` for Debian's squid.conf with one bad line appended, as the
squid role runs it.
"""

from aerie_testutil import REPO, load_script

filters = load_script("roles/squid/filter_plugins/squid_filters.py", "squid_filters")
FIXTURES = REPO / "tests" / "fixtures" / "squid"


def test_an_unknown_directive_is_the_one_line_left():
    output = (FIXTURES / "parse-unrecognized.log").read_text()
    assert output.count("Processing:") > 30
    assert filters.squid_parse_errors(output, "new squid.conf") == ["new squid.conf(9165): unrecognized: 'cache_mme'"]


def test_a_bad_value_gives_squids_error_and_its_verdict():
    output = (FIXTURES / "parse-bungled.log").read_text()
    assert filters.squid_parse_errors(output, "new squid.conf") == [
        "ERROR: No digits were found in the input value 'banana'.",
        "FATAL: Bungled new squid.conf line 9165: cache_mem banana",
    ]


def test_worker_prefixes_and_repeats_are_dropped_and_processing_lines_never_count():
    output = (
        "2026/11/30 19:59:56 kid1| Processing: deny_info ERROR_PAGE all\n"
        "2026/11/30 19:59:56.123 kid1| ERROR: x\n"
        "2026/11/30 19:59:56 kid1| ERROR: x\n"
    )
    assert filters.squid_parse_errors(output) == ["ERROR: x"]


def test_without_an_error_line_the_last_line_stands_in():
    assert filters.squid_parse_errors("2026/11/30 19:59:56| Processing: a\nsquid: cannot open\n") == [
        "squid: cannot open"
    ]
    assert filters.squid_parse_errors("") == ["squid -k parse failed and printed nothing"]

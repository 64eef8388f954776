"""kit.cli: argument parsing forwarded to the library, one exit code for the kit's errors, tolerant output (no server)."""

from __future__ import annotations

import io

import pytest

from kit import cli
from kit.cli import tolerant_stdio
from kit.exceptions import EXIT_CODE


def test_output_under_an_ascii_locale_escapes_what_it_cannot_encode():
    """A log line with an em dash is printed as an escape, not a UnicodeEncodeError."""
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="ascii")
    tolerant_stdio(stream)
    print("engine ready \u2014 128 seqs", file=stream)
    stream.flush()
    assert raw.getvalue() == b"engine ready \\u2014 128 seqs\n"


def test_bench_arguments():
    """The bench's options parse into lists and counts; bad levels are refused."""
    parser = cli.parser()
    args = parser.parse_args(["bench", "--quick", "--concurrency", "8,1,48", "--max-tokens", "64", "--requests", "5",
                              "--no-guard-bench", "--perf-analyzer", "--grpc-url", "grpc://h:1"])
    assert args.concurrency == [1, 8, 48] and args.max_tokens == 64 and args.requests == 5
    assert args.quick and args.no_guard_bench and args.perf_analyzer and args.grpc_url == "grpc://h:1"
    with pytest.raises(SystemExit):
        parser.parse_args(["bench", "--concurrency", "0,2"])
    with pytest.raises(SystemExit):
        parser.parse_args(["bench", "--requests", "many"])


def test_bench_command_forwards_typed_settings(monkeypatch):
    """`kit bench` hands the bench one BenchSettings record (defaults filled in), not argparse's namespace."""
    from kit.perf import bench

    seen = []
    monkeypatch.setattr(bench, "main", lambda settings: seen.append(settings) or 0)
    assert cli.main(["bench", "--quick", "--streams-per-process", "32", "--no-progress"]) == 0
    (settings,) = seen
    assert isinstance(settings, bench.BenchSettings)
    assert settings.quick and settings.max_tokens == bench.QUICK_MAX_TOKENS and settings.progress is False
    assert settings.concurrency == bench.DEFAULT_CONCURRENCY and settings.streams_per_process == 32


def test_kit_errors_exit_with_one_code(monkeypatch, capsys):
    """A KitError prints one line naming the fix and exits with EXIT_CODE."""
    assert cli.main(["run", "02", "-p", "first_max_tokens", "eight"]) == EXIT_CODE
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "first_max_tokens must be int" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("argv, expected", [
    (["02", "first_prompt", "Answer briefly: what is Triton?"], "Answer briefly: what is Triton?"),
    (["02", "first_prompt", "- list three GPUs"], "- list three GPUs"),
    (["01", "refusal", "no"], "no"),
    (["02", "model", "1.10"], "1.10"),
    (["02", "first_max_tokens", "010"], 10),
    (["03", "stream_demo", "no"], False),
    (["04", "concurrency", "[1, 02, 4]"], [1, 2, 4]),
])
def test_run_reads_each_value_by_its_declared_type(monkeypatch, argv, expected):
    """`kit run NB -p name value`: text as typed for str parameters, the declared type's parse otherwise."""
    from kit import notebooks

    seen = {}
    monkeypatch.setattr(notebooks, "run_one", lambda nb, params_file=None, overrides=None: seen.update(overrides))
    notebook, name, value = argv
    assert cli.main(["run", notebook, "-p", name, value]) == 0
    assert seen == {name: expected} and type(seen[name]) is type(expected)

"""kit.cli: behaviour of the command line that does not need a server."""

from __future__ import annotations

import io

from kit.cli import tolerant_stdio


def test_output_under_an_ascii_locale_escapes_what_it_cannot_encode():
    """A log line with an em dash is printed as an escape, not a UnicodeEncodeError."""
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="ascii")
    tolerant_stdio(stream)
    print("engine ready \u2014 128 seqs", file=stream)
    stream.flush()
    assert raw.getvalue() == b"engine ready \\u2014 128 seqs\n"

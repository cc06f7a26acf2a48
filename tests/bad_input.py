"""What the bad-input tests (``tests/**/test_*_bad_input.py``, issue 14, point 7) expect of a refusal.

A refusal is the project's own error, a `NeuralTradeError`, whose message is one line and names what was
wrong. A value the message quotes may hold line breaks of its own: the command line escapes them
(`neuraltrade_cli.output.safe`), so only the message's own words must stay on one line.
"""

from __future__ import annotations

from collections.abc import Iterable

from hypothesis import strategies as st

from neuraltrade.errors import NeuralTradeError

#: Text a user or a file might pass where a name or a value belongs: SQL injection attempts, quotes,
#: comment markers, control characters, NUL, line breaks, right-to-left marks and astral characters.
HOSTILE_TEXTS = (
    "'",
    '"',
    "';",
    "' OR '1'='1",
    "x') OR 1=1 --",
    '" OR 1=1 --',
    "1; DROP TABLE memory_items; --",
    "'; DROP TABLE sentinel; --",
    "*/ SELECT 1 /*",
    "x\x00y",
    "\x00",
    "line\nbreak",
    "\r\n",
    "\x1b[2J",
    "\u202eevil",
    "\u2028",
    "é€😀",
    '$."x"',
    "%s",
    "?",
    ":name",
    "",
    " ",
)
hostile_texts = st.one_of(
    st.sampled_from(HOSTILE_TEXTS),
    st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=40),
    st.lists(st.sampled_from(HOSTILE_TEXTS), min_size=2, max_size=4).map("".join),
)


def assert_refusal(error: BaseException, *, naming: Iterable[str] = (), embedded: Iterable[str] = ()) -> str:
    """Assert `error` is a `NeuralTradeError` with a one-line message naming each of `naming`; return it.

    `embedded` are values the message may quote as they are (their line breaks are not the message's).
    """
    assert isinstance(error, NeuralTradeError), f"{type(error).__name__} leaked: {error!r}"
    message = str(error)
    assert message.strip(), f"{type(error).__name__} has an empty message"
    own_words = message
    for value in sorted({*naming, *embedded}, key=len, reverse=True):
        if value:
            own_words = own_words.replace(value, "")
    assert "\n" not in own_words and "\r" not in own_words, f"message is not one line: {message!r}"
    for name in naming:
        assert name in message, f"message does not name {name!r}: {message!r}"
    return message

"""Property tests of specs made from copies: whatever the prompt, the request the spec renders
carries exactly that prompt where the marker was (JSON, form, query, text, multipart); whatever
the copy's own text, it reaches the server exactly as copied (Jinja syntax, `$name`, `\\r\\n`,
a final line break). Rendered without a network, with the spec's own `build_request`."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

from hypothesis import given, settings
from hypothesis import strategies as st

from jib.generator.http import RequestTransformContext
from jib.generator.http.copied import import_raw_request

# Any text but NUL and lone surrogates (which no HTTP body can carry as UTF-8).
TEXT = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=60
)
QUICK = settings(max_examples=60, deadline=None)


def render(copy: str, prompt: str) -> tuple[str, str]:
    spec = import_raw_request(copy, scheme="http").spec
    request = spec.build_request(RequestTransformContext(content=prompt, all_content=prompt))
    return request.url, request.content or ""


@QUICK
@given(prompt=TEXT, literal=TEXT)
def test_json_bodies_carry_the_prompt_and_the_copied_strings_exactly(
    prompt: str, literal: str
) -> None:
    body = json.dumps({"q": "{PROMPT}", "mixed": "<{PROMPT}>", "copied": literal})
    copy = f"POST /x HTTP/1.1\nHost: a.test\nContent-Type: application/json\n\n{body}"

    _, sent = render(copy, prompt)

    assert json.loads(sent) == {"q": prompt, "mixed": f"<{prompt}>", "copied": literal}


@QUICK
@given(prompt=TEXT)
def test_form_bodies_and_queries_carry_the_prompt_exactly(prompt: str) -> None:
    copy = (
        "POST /x?a=1&q=%7BPROMPT%7D HTTP/1.1\nHost: a.test\n"
        "Content-Type: application/x-www-form-urlencoded\n\nm=pre{PROMPT}post&z=%2B1"
    )

    url, sent = render(copy, prompt)

    form = parse_qs(sent, keep_blank_values=True, strict_parsing=True)
    assert form == {"m": [f"pre{prompt}post"], "z": ["+1"]}
    query = parse_qs(urlsplit(url).query, keep_blank_values=True)
    assert query == {"a": ["1"], "q": [prompt]}


@QUICK
@given(prompt=TEXT, before=TEXT, after=TEXT)
def test_text_bodies_keep_the_copied_text_exactly(prompt: str, before: str, after: str) -> None:
    body = f"{before}{{PROMPT}}{after}"
    copy = f"POST /x HTTP/1.1\nHost: a.test\nContent-Type: text/plain\n\n{body}"
    if "\n" in before:  # a blank line in it would end the head; the body starts after it
        return

    _, sent = render(copy, prompt)

    expected = f"{before}{prompt}{after}"
    # One line break after the body is the copy's, not the body's.
    if after.endswith("\r\n"):
        expected = expected[:-2]
    elif after.endswith("\n"):
        expected = expected[:-1]
    assert sent == expected


@QUICK
@given(prompt=TEXT)
def test_multipart_bodies_keep_their_crlf_framing(prompt: str) -> None:
    boundary = "b0und4ry"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="q"\r\n\r\n{{PROMPT}}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="n"\r\n\r\n{{{{ 1 }}}}\r\n'
        f"--{boundary}--\r\n"
    )
    copy = (
        "POST /x HTTP/1.1\r\nHost: a.test\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n{body}"
    )

    _, sent = render(copy, prompt)

    assert sent == body.replace("{PROMPT}", prompt)

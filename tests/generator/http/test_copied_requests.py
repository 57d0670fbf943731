"""`HTTPGenerator.from_raw_request` and `from_curl` over real-world copies: each copy becomes a
spec whose generator sends the request the copy describes, with the prompt in place of the
marker, to a real server on 127.0.0.1 that records what arrived.

The prompt holds everything an escaping mistake would show: quotes, `&` and `=`, `+`, `<b>`,
non-ASCII and an emoji, a line break, Jinja syntax, a slash and a percent escape.
"""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import pytest

import jib
from jib.generator.http import HTTPGenerator
from tests.support.recording_server import Recorded, RecordingServer, serve_recording

PROMPT = 'He said "hi" & 2+2=4 <b>é 😀</b>\nnext {{ 7*7 }} /x %41'


@pytest.fixture(scope="module")
def _recording() -> Iterator[RecordingServer]:
    with serve_recording() as running:
        yield running


@pytest.fixture
def recording(_recording: RecordingServer) -> RecordingServer:
    _recording.requests.clear()
    return _recording


@dataclass
class Copy:
    """A copied request, what the server must receive, and the secrets in it."""

    text: str
    check: Callable[[Recorded], None]
    secrets: list[str] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def is_curl(self) -> bool:
        return self.text.lstrip().startswith("curl")


def crlf(text: str) -> str:
    return text.replace("\n", "\r\n")


def _json_with_odd_case(seen: Recorded) -> None:
    assert (seen.method, seen.path) == ("POST", "/api/chat")
    assert seen.header("authorization") == "Bearer sk-burp-secret-0001"
    assert seen.header("x-api-key") == "key-burp-secret-0002"
    assert seen.header("content-type") == "application/json"
    assert seen.json() == {
        "model": "bot",
        "messages": [{"role": "user", "content": PROMPT}],
        "stream": False,
        "meta": {"note": "{{ not a template }}", "ref": "$model", "n": 1.5},
    }


def _chunked(seen: Recorded) -> None:
    assert seen.json() == {"message": PROMPT, "lang": "en"}
    assert seen.header("transfer-encoding") is None


def chunked(body: str, size: int) -> str:
    data = body.encode()
    chunks = [data[start : start + size] for start in range(0, len(data), size)]
    out = b"".join(
        f"{len(chunk):x}{';ext=1' if index == 1 else ''}\r\n".encode() + chunk + b"\r\n"
        for index, chunk in enumerate(chunks)
    )
    return (out + b"0\r\n\r\n").decode()


def _multipart(boundary: str) -> Callable[[Recorded], None]:
    def check(seen: Recorded) -> None:
        assert seen.header("content-type") == f"multipart/form-data; boundary={boundary}"
        body = seen.body.decode()
        assert body.startswith(f"--{boundary}\r\n")
        assert f'name="message"\r\n\r\n{PROMPT}\r\n--{boundary}\r\n' in body
        assert 'filename="a.txt"\r\nContent-Type: text/plain\r\n\r\nhello {{ file }}\r\n' in body
        assert body.endswith(f"--{boundary}--\r\n")

    return check


def _query(seen: Recorded) -> None:
    assert (seen.method, seen.path, seen.body) == ("GET", "/search", b"")
    assert seen.query == {"q": [PROMPT], "lang": ["en"], "api_key": ["qk-secret-0003"]}


def _form(seen: Recorded) -> None:
    assert (seen.method, seen.path) == ("POST", "/chat")
    assert seen.form() == {"message": [PROMPT], "csrf_token": ["csrf-0005"], "submit": ["Send"]}
    assert seen.header("cookie") == "session=cookie-secret-0004; theme=dark"


def _http2(seen: Recorded) -> None:
    assert (seen.method, seen.path, seen.query) == ("POST", "/v1/ask", {"stream": ["0"]})
    assert seen.header("cookie") == "a=cookie-secret-1; b=cookie-secret-2"
    assert seen.header("sec-ch-ua") == '"Chromium";v="131"'
    assert seen.json() == {"question": PROMPT}


def _firefox_text(seen: Recorded) -> None:
    assert (seen.method, seen.path) == ("PUT", "/api/v2/messages/42")
    assert seen.body.decode() == f"Question: {PROMPT}"
    assert seen.header("if-none-match") is None
    assert seen.header("user-agent") == "Mozilla/5.0 (X11; Linux x86_64; rv:133.0)"


def _xml(seen: Recorded) -> None:
    question = ET.fromstring(seen.body).find("q")
    assert question is not None
    assert question.text == PROMPT


def _path(seen: Recorded) -> None:
    assert seen.method == "GET"
    assert unquote(seen.path) == f"/bots/helper/ask/{PROMPT}"
    assert seen.path.count("/") == 4  # the prompt's slash stays inside its segment
    assert seen.query == {"v": ["1"]}


def _chrome_curl(seen: Recorded) -> None:
    assert seen.json() == {"message": PROMPT, "note": "it's é ok"}
    assert seen.header("cookie") == "sid=curl-cookie-0006"
    assert seen.header("accept-language") == "en-US,en;q=0.9"


def _curl_get(seen: Recorded) -> None:
    assert (seen.method, seen.path, seen.body) == ("GET", "/search", b"")
    assert seen.query == {"q": [PROMPT], "lang": ["en"]}
    assert seen.header("x-auth-token") == "tok-secret-0007"


def _curl_form(seen: Recorded) -> None:
    expected = base64.b64encode(b"alice:pw-secret-0008").decode()
    assert seen.header("authorization") == f"Basic {expected}"
    body = seen.body.decode()
    assert f'name="message"\r\n\r\n{PROMPT}\r\n' in body
    assert 'name="kind"\r\n\r\nquestion\r\n' in body


def _curl_json(seen: Recorded) -> None:
    assert (seen.method, seen.path) == ("PATCH", "/v1/run")
    assert seen.header("content-type") == "application/json"
    assert seen.header("accept") == "application/json"
    assert seen.header("cookie") == "session=cookie-0009"
    assert seen.json() == {"input": {"text": f"Q: {PROMPT}"}}


def _curl_data(seen: Recorded) -> None:
    assert seen.method == "POST"
    assert seen.header("content-type") == "application/x-www-form-urlencoded"
    assert seen.form() == {"message": [PROMPT], "mode": ["fast"]}


BOUNDARY = "----WebKitFormBoundaryABC123"
MULTIPART = f"""POST /upload HTTP/1.1
Host: HOST
Content-Type: multipart/form-data; boundary={BOUNDARY}

--{BOUNDARY}
Content-Disposition: form-data; name="message"

{{PROMPT}}
--{BOUNDARY}
Content-Disposition: form-data; name="file"; filename="a.txt"
Content-Type: text/plain

hello {{{{ file }}}}
--{BOUNDARY}--
"""

COPIES = {
    "burp-json-headers-in-odd-case": Copy(
        crlf(
            """POST /api/chat HTTP/1.1
hOsT: HOST
cOnTeNt-TyPe: application/json
AUTHORIZATION: Bearer sk-burp-secret-0001
X-API-KEY: key-burp-secret-0002
accept: */*
Content-Length: 999
Connection: keep-alive

{"model":"bot","messages":[{"role":"user","content":"{PROMPT}"}],"stream":false,"""
            """"meta":{"note":"{{ not a template }}","ref":"$model","n":1.5}}"""
        ),
        _json_with_odd_case,
        ["sk-burp-secret-0001", "key-burp-secret-0002"],
        {"scheme": "http"},
    ),
    "chunked-body": Copy(
        crlf(
            """POST /api/chat HTTP/1.1
Host: HOST
Content-Type: application/json
Transfer-Encoding: chunked

"""
        )
        + chunked('{"message": "{PROMPT}", "lang": "en"}', 10),
        _chunked,
        kwargs={"scheme": "http"},
    ),
    "multipart-crlf": Copy(crlf(MULTIPART), _multipart(BOUNDARY), kwargs={"scheme": "http"}),
    "multipart-saved-with-unix-line-ends": Copy(
        MULTIPART, _multipart(BOUNDARY), kwargs={"scheme": "http"}
    ),
    "query-marker-url-encoded": Copy(
        """GET /search?q=%7BPROMPT%7D&lang=en&api_key=qk-secret-0003 HTTP/1.1
Host: HOST
Accept: application/json
""",
        _query,
        ["qk-secret-0003"],
        {"scheme": "http"},
    ),
    "form-body-scheme-from-origin": Copy(
        crlf(
            """POST /chat HTTP/1.1
Host: HOST
Content-Type: application/x-www-form-urlencoded
Cookie: session=cookie-secret-0004; theme=dark
Origin: http://HOST

message={PROMPT}&csrf_token=csrf-0005&submit=Send
"""
        ),
        _form,
        ["cookie-secret-0004"],
    ),
    "http2-pseudo-headers-from-chrome": Copy(
        """:authority: HOST
:method: POST
:path: /v1/ask?stream=0
:scheme: http
accept: application/json
content-type: application/json
cookie: a=cookie-secret-1
cookie: b=cookie-secret-2
priority: u=1, i
sec-ch-ua: "Chromium";v="131"

{"question":"{PROMPT}"}""",
        _http2,
        ["cookie-secret-1", "cookie-secret-2"],
    ),
    "firefox-http2-text-scheme-from-referer": Copy(
        """PUT /api/v2/messages/42 HTTP/2
Host: HOST
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:133.0)
Referer: http://HOST/chat
Content-Type: text/plain;charset=UTF-8
If-None-Match: "abc"

Question: {PROMPT}
""",
        _firefox_text,
    ),
    "xml-body": Copy(
        """POST /soap HTTP/1.1
Host: HOST
Content-Type: text/xml; charset=utf-8

<?xml version="1.0"?><ask><q>{PROMPT}</q></ask>""",
        _xml,
        kwargs={"scheme": "http"},
    ),
    "marker-in-the-path": Copy(
        "GET /bots/helper/ask/{PROMPT}?v=1 HTTP/1.1\nHost: HOST\n\n",
        _path,
        kwargs={"scheme": "http"},
    ),
    "chrome-copy-as-curl-bash": Copy(
        """curl 'http://HOST/api/chat' \\
  -H 'accept: */*' \\
  -H 'Accept-Language: en-US,en;q=0.9' \\
  -H 'content-type: application/json' \\
  -H 'Cookie: sid=curl-cookie-0006' \\
  -H 'origin: http://HOST' \\
  --data-raw $'{"message":"{PROMPT}","note":"it\\'s \\u00e9 ok"}' \\
  --compressed""",
        _chrome_curl,
        ["curl-cookie-0006"],
    ),
    "curl-get-data-urlencode": Copy(
        "curl -G 'http://HOST/search' --data-urlencode 'q={PROMPT}' -d lang=en "
        "-H 'X-Auth-Token: tok-secret-0007'",
        _curl_get,
        ["tok-secret-0007"],
    ),
    "curl-form-and-user": Copy(
        "curl -sS -X POST http://HOST/upload -F 'message={PROMPT}' -F kind=question "
        "-u 'alice:pw-secret-0008'",
        _curl_form,
        ["pw-secret-0008", base64.b64encode(b"alice:pw-secret-0008").decode()],
    ),
    "curl-json-patch-cookie": Copy(
        """curl -X PATCH --json '{"input": {"text": "Q: {PROMPT}"}}' -b 'session=cookie-0009' \\
     "http://HOST/v1/run\"""",
        _curl_json,
        ["cookie-0009"],
    ),
    "curl-data-form": Copy(
        "curl http://HOST/chat -d 'message={PROMPT}' -d 'mode=fast'", _curl_data
    ),
}


@pytest.mark.parametrize("name", list(COPIES))
async def test_a_copied_request_becomes_a_spec_that_sends_it(
    name: str, recording: RecordingServer
) -> None:
    copy = COPIES[name]
    text = copy.text.replace("HOST", recording.url.removeprefix("http://"))
    if copy.is_curl:
        generator = HTTPGenerator.from_curl(text, **copy.kwargs)
    else:
        generator = HTTPGenerator.from_raw_request(text, **copy.kwargs)

    chat = await generator.chat(PROMPT)

    assert '"reply": "ok 1"' in chat.content
    assert len(recording.requests) == 1
    copy.check(recording.last)
    identifier = generator.to_identifier()
    spec_text = generator.spec.to_yaml() if generator.spec else ""
    for secret in copy.secrets:
        assert secret not in identifier
        assert secret not in spec_text
        assert secret not in repr(generator)


async def test_the_spec_of_a_copy_round_trips_through_its_identifier(
    recording: RecordingServer,
) -> None:
    copy = COPIES["burp-json-headers-in-odd-case"]
    text = copy.text.replace("HOST", recording.url.removeprefix("http://"))
    generator = HTTPGenerator.from_raw_request(text, scheme="http", model="bot")

    rebuilt = jib.get_generator(generator.to_identifier(), trusted=False)
    assert isinstance(rebuilt, HTTPGenerator)
    rebuilt.api_key = generator.api_key
    rebuilt.state = dict(generator.state)
    await rebuilt.chat(PROMPT)

    _json_with_odd_case(recording.last)


async def test_the_answer_is_read_with_a_response_path(recording: RecordingServer) -> None:
    generator = HTTPGenerator.from_curl(
        f'curl {recording.url}/chat --json \'{{"message": "{{PROMPT}}"}}\'',
        response="$.echo",
    )

    chat = await generator.chat("what is jib?")

    assert chat.content == "what is jib?"


async def test_a_custom_marker(recording: RecordingServer) -> None:
    generator = HTTPGenerator.from_curl(
        f'curl {recording.url}/chat --json \'{{"message": "<<Q>>", "x": "{{PROMPT}}"}}\'',
        marker="<<Q>>",
    )

    await generator.chat("hi")

    assert recording.last.json() == {"message": "hi", "x": "{PROMPT}"}


async def test_the_marker_in_a_header(recording: RecordingServer) -> None:
    text = f"GET /ask HTTP/1.1\nHost: {recording.url[7:]}\nX-Question: Q={{PROMPT}};\n\n"
    generator = HTTPGenerator.from_raw_request(text, scheme="http")

    await generator.chat("why & how?")

    assert recording.last.header("x-question") == "Q=why & how?;"


async def test_cookies_can_be_left_to_the_server(recording: RecordingServer) -> None:
    text = (
        f"POST /chat HTTP/1.1\nHost: {recording.url[7:]}\nCookie: session=old-session-cookie\n"
        'Content-Type: application/json\n\n{"message": "{PROMPT}"}'
    )
    generator = HTTPGenerator.from_raw_request(text, scheme="http", cookies=False)

    await generator.chat("hi")

    assert recording.last.header("cookie") is None
    assert generator.get_api_key() is None


async def test_from_state_reads_what_a_login_step_fetches(recording: RecordingServer) -> None:
    text = (
        f"POST /chat?csrf=copied-1 HTTP/1.1\nHost: {recording.url[7:]}\n"
        "X-CSRF-Token: copied-2\nContent-Type: application/x-www-form-urlencoded\n\n"
        "message={PROMPT}&csrf_token=copied-3"
    )
    generator = HTTPGenerator.from_raw_request(
        text,
        scheme="http",
        from_state=["X-CSRF-Token=csrf", "csrf_token=csrf", "csrf"],
        cookies=False,
    )
    assert generator.spec is not None
    assert "copied-" not in generator.spec.to_yaml()
    generator.state["csrf"] = "fresh & new"  # as a login step would

    await generator.chat("hi")

    seen = recording.last
    assert seen.header("x-csrf-token") == "fresh & new"
    assert seen.form() == {"message": ["hi"], "csrf_token": ["fresh & new"]}
    assert seen.query == {"csrf": ["fresh & new"]}


def test_from_state_in_json_and_multipart_bodies() -> None:
    from jib.generator.http.copied import import_curl

    json_copy = import_curl(
        """curl https://a.test --json '{"q": "{PROMPT}", "meta": {"xsrfToken": "old"}}'""",
        from_state=["xsrfToken"],
    )
    form_copy = import_curl(
        "curl https://a.test -F 'q={PROMPT}' -F 'nonce=old'", from_state=["nonce=n"]
    )

    assert json_copy.spec.request.transforms[0].pattern == {
        "q": "$content",
        "meta": {"xsrfToken": "$state.xsrf_token"},
    }
    assert "{{ state.n }}" in form_copy.spec.request.transforms[0].pattern
    assert "old" not in form_copy.spec.to_yaml()


def test_from_state_naming_what_the_copy_lacks_is_an_error() -> None:
    with pytest.raises(jib.InvalidGeneratorError, match="from_state names 'X-Nonce'"):
        HTTPGenerator.from_curl("curl https://a.test -d 'q={PROMPT}'", from_state=["X-Nonce"])
    with pytest.raises(jib.InvalidGeneratorError, match="is not a state key"):
        HTTPGenerator.from_curl("curl https://a.test -d 'q={PROMPT}'", from_state=["q=a.b"])


def test_the_secrets_go_to_api_key_first_then_state() -> None:
    from jib.generator.http.copied import import_raw_request

    imported = import_raw_request(
        "POST /x HTTP/1.1\nHost: bot.test\nCookie: sid=cookie-value-1\n"
        "X-Api-Key: key-value-2\nAuthorization: Token auth-value-3\n"
        "X-CSRF-Token: csrf-stays\nContent-Type: application/json\n\n"
        '{"message": "{PROMPT}", "password": "password-value-4"}'
    )

    assert imported.api_key == "auth-value-3"
    assert imported.state == {
        "x_api_key": "key-value-2",
        "cookie": "sid=cookie-value-1",
        "password": "password-value-4",
    }
    assert [(s.where, s.reference) for s in imported.secrets] == [
        ("the Authorization header", "api_key"),
        ("the X-Api-Key header", "state.x_api_key"),
        ("the Cookie header", "state.cookie"),
        ("JSON field 'password'", "state.password"),
    ]
    headers = imported.spec.request.headers
    assert headers["Authorization"] == "Token {{ api_key }}"
    assert headers["X-CSRF-Token"] == "csrf-stays"
    assert imported.spec.request.transforms[0].pattern == {
        "message": "$content",
        "password": "$state.password",
    }
    assert "-value-" not in repr(imported)


def test_curl_options_become_generator_attributes(tmp_path: Any) -> None:
    generator = HTTPGenerator.from_curl(
        "curl -k -x 127.0.0.1:8080 -m 12.5 --max-redirs 2 --cert /c.pem --key /k.pem "
        "https://bot.test/chat -d 'message={PROMPT}'"
    )

    assert generator.verify is False
    assert generator.proxy == "http://127.0.0.1:8080"
    assert (generator.cert, generator.cert_keyfile) == ("/c.pem", "/k.pem")
    assert generator.max_redirects == 2
    assert generator.spec is not None and generator.spec.request.timeout == 12.5
    with_ca = HTTPGenerator.from_curl("curl --cacert /ca.pem https://bot.test -d 'q={PROMPT}'")
    assert with_ca.verify == "/ca.pem"


BAD_RAW = {
    "no marker": (
        'POST /chat HTTP/1.1\nHost: bot.test\n\n{"message": "hello"}',
        "there is no {PROMPT} marker in the copied request",
    ),
    "empty": ("\n \n", "the copied request is empty"),
    "malformed request line": (
        "POST\nHost: bot.test\n\n{PROMPT}",
        "line 1 of the copied request is not a request line",
    ),
    "headers without a request line": (
        "Host: bot.test\nContent-Type: text/plain\n\n{PROMPT}",
        "starts with a header line; it needs a request line first",
    ),
    "a line that is not a header": (
        "POST /chat HTTP/1.1\nHost: bot.test\nthis is not a header\n\n{PROMPT}",
        "line 3 of the copied request is not a header",
    ),
    "no host": ("POST /chat HTTP/1.1\nAccept: */*\n\n{PROMPT}", "names no host"),
    "broken chunks": (
        "POST /chat HTTP/1.1\nHost: bot.test\nTransfer-Encoding: chunked\n\n{PROMPT}",
        "is not chunked as its Transfer-Encoding",
    ),
    "a chunk cut short": (
        "POST /chat HTTP/1.1\nHost: bot.test\nTransfer-Encoding: chunked\n\n"
        "ff\r\n{PROMPT}\r\n0\r\n\r\n",
        "ends inside a chunk of 255 bytes",
    ),
    "not JSON": (
        "POST /chat HTTP/1.1\nHost: bot.test\nContent-Type: application/json\n\n"
        '{"message": {PROMPT}}',
        "declared JSON but is not valid JSON",
    ),
    "marker in a JSON key": (
        'POST /chat HTTP/1.1\nHost: bot.test\nContent-Type: application/json\n\n{"{PROMPT}": 1}',
        "is in a JSON key",
    ),
    "multipart without its boundary": (
        "POST /chat HTTP/1.1\nHost: bot.test\nContent-Type: multipart/form-data; boundary=zz\n\n"
        '--other\r\nContent-Disposition: form-data; name="q"\r\n\r\n{PROMPT}\r\n--other--\r\n',
        "is not split by its boundary 'zz'",
    ),
    "an unknown method": ("BREW /pot HTTP/1.1\nHost: bot.test\n\n{PROMPT}", "method must be"),
    "marker in the host": (
        "GET https://{PROMPT}.bot.test/ HTTP/1.1\n\n",
        "marker is in the URL's host",
    ),
    "a scheme that is not http": (
        "POST ftp://bot.test/x HTTP/1.1\n\n{PROMPT}",
        "the scheme must be http or https",
    ),
}


@pytest.mark.parametrize("name", list(BAD_RAW))
def test_a_bad_raw_copy_is_one_clear_error(name: str) -> None:
    text, expected = BAD_RAW[name]

    with pytest.raises(jib.InvalidGeneratorError) as caught:
        HTTPGenerator.from_raw_request(text)

    assert expected in str(caught.value)


def test_a_bad_line_is_shown_without_its_credentials() -> None:
    with pytest.raises(jib.InvalidGeneratorError) as caught:
        HTTPGenerator.from_raw_request(
            "POST /chat HTTP/1.1\nHost: a.test\nAuthorization Bearer sk-line-secret-99\n\n{PROMPT}"
        )

    assert "line 3 of the copied request is not a header" in str(caught.value)
    assert "sk-line-secret-99" not in str(caught.value)


BAD_CURL = {
    "not curl": ("wget https://bot.test", "not a curl command"),
    "no URL": ("curl -d 'q={PROMPT}'", "names no URL"),
    "two URLs": ("curl https://a.test https://b.test -d '{PROMPT}'", "names 2 URLs"),
    "reads a file": ("curl https://a.test -d @body.json", "reads a file"),
    "a form file": ("curl https://a.test -F 'f=@x.png' -F 'q={PROMPT}'", "reads a file"),
    "a shell variable": ('curl https://a.test -H "Authorization: Bearer $TOKEN"', "variable"),
    "a pipe": ("curl https://a.test -d '{PROMPT}' | jq .", "followed by another command"),
    "an unknown option": ("curl --frobnicate https://a.test", "unknown or unsupported"),
    "an upload": ("curl -T file.txt https://a.test", "uploads a file"),
    "unclosed quote": ("curl 'https://a.test", "unclosed ' quote"),
    "a windows copy": ('curl ^"https://a.test^" ^\n  -d ^"q^"', "Windows cmd copy"),
    "user without password": ("curl -u alice https://a.test -d '{PROMPT}'", "without a password"),
    "option without value": ("curl https://a.test -d", "needs a value"),
    "no marker": ("curl https://a.test -d 'q=hello'", "no {PROMPT} marker"),
    "a certificate password": (
        "curl --cert me.pem:hunter2-pass https://a.test -d '{PROMPT}'",
        "jib does not take key passwords",
    ),
}


@pytest.mark.parametrize("name", list(BAD_CURL))
def test_a_bad_curl_command_is_one_clear_error(name: str) -> None:
    command, expected = BAD_CURL[name]

    with pytest.raises(jib.InvalidGeneratorError) as caught:
        HTTPGenerator.from_curl(command)

    assert expected in str(caught.value)
    assert "hunter2-pass" not in str(caught.value)


def test_shell_words_read_what_copies_write() -> None:
    from jib.generator.http._curl import shell_words

    assert shell_words("curl 'a b' \"c \\\"d\\\"\" e\\ f \\\n  -H $'x\\ty\\'z\\u00e9\\x41'") == [
        "curl",
        "a b",
        'c "d"',
        "e f",
        "-H",
        "x\ty'zéA",
    ]
    assert shell_words("curl a \\\r\n b # a comment\n") == ["curl", "a", "b"]
    assert shell_words("curl $'\\xc3\\xa9'") == ["curl", "é"]

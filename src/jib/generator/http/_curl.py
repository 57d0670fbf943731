"""Read a `curl` command (as browsers' "Copy as cURL" and API docs write it) into a
`CopiedRequest`.

The command is split as a POSIX shell would: `'…'`, `"…"`, `$'…'` (ANSI-C quoting, as Chrome
writes bodies with special characters), backslash escapes and line continuations. Nothing is
expanded or run: a shell variable, a command substitution, a second command (`|`, `;`, `&&`) or
an option that reads a file (`-d @file`, `-F name=@file`) is refused with an error saying so.

Options read: the URL (`--url` too), `-X`, `-H`, `-d`/`--data`/`--data-ascii`/`--data-binary`/
`--data-raw`, `--data-urlencode`, `--json`, `-F`/`--form`/`--form-string`, `-G`, `-I`, `-u`,
`-b`, `-A`, `-e`, `--oauth2-bearer`; `-k`, `--cacert`, `-E`/`--cert`, `--key`, `-x`, `-m` and
`--max-redirs` become generator attributes. Options about curl's own output, progress, protocol
version or compression change nothing about the request and are skipped.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import quote_plus

from jib._secrets import redact
from jib.errors import InvalidGeneratorError
from jib.generator.http._raw_request import CopiedRequest

__all__ = ["MULTIPART_BOUNDARY", "parse_curl", "shell_words"]

MULTIPART_BOUNDARY = "----jibFormBoundary7MA4YWxkTrZu0gW"
"""The boundary of the multipart body built from `-F` fields."""

_ANSI_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "e": "\x1b",
    "E": "\x1b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    "'": "'",
    '"': '"',
    "?": "?",
}
_OPERATORS = frozenset("|;&<>")

# Options that take a value, by every name curl knows them by; the value is the canonical name.
_VALUED = {
    "-X": "request",
    "--request": "request",
    "-H": "header",
    "--header": "header",
    "-d": "data",
    "--data": "data",
    "--data-ascii": "data",
    "--data-binary": "data-binary",
    "--data-raw": "data-raw",
    "--data-urlencode": "data-urlencode",
    "--json": "json",
    "-F": "form",
    "--form": "form",
    "--form-string": "form-string",
    "-u": "user",
    "--user": "user",
    "-b": "cookie",
    "--cookie": "cookie",
    "-A": "user-agent",
    "--user-agent": "user-agent",
    "-e": "referer",
    "--referer": "referer",
    "--url": "url",
    "--oauth2-bearer": "oauth2-bearer",
    "-x": "proxy",
    "--proxy": "proxy",
    "-m": "max-time",
    "--max-time": "max-time",
    "--max-redirs": "max-redirs",
    "--cacert": "cacert",
    "-E": "cert",
    "--cert": "cert",
    "--key": "key",
    "--cert-type": "cert-type",
    "--key-type": "cert-type",
    # Skipped: they change what curl prints or how patiently it connects, not the request.
    "-o": "skip",
    "--output": "skip",
    "-w": "skip",
    "--write-out": "skip",
    "-D": "skip",
    "--dump-header": "skip",
    "-c": "skip",
    "--cookie-jar": "skip",
    "--connect-timeout": "skip",
    "--retry": "skip",
    "--retry-delay": "skip",
    "--retry-max-time": "skip",
    "--limit-rate": "skip",
    "--max-filesize": "skip",
    "--keepalive-time": "skip",
    "--expect100-timeout": "skip",
    "--ciphers": "skip",
    "--proto": "skip",
    "--proto-redir": "skip",
    "--trace": "skip",
    "--trace-ascii": "skip",
    "--stderr": "skip",
}
_FLAGS = {
    "-k": "insecure",
    "--insecure": "insecure",
    "-G": "get",
    "--get": "get",
    "-I": "head",
    "--head": "head",
}
_SKIPPED_FLAGS = frozenset(
    {
        "-s",
        "--silent",
        "-S",
        "--show-error",
        "-v",
        "--verbose",
        "-i",
        "--include",
        "-L",
        "--location",
        "-f",
        "--fail",
        "--fail-with-body",
        "-N",
        "--no-buffer",
        "-g",
        "--globoff",
        "-#",
        "--progress-bar",
        "--no-progress-meter",
        "--compressed",
        "--raw",
        "--path-as-is",
        "--no-keepalive",
        "--http1.0",
        "--http1.1",
        "--http2",
        "--http2-prior-knowledge",
        "--http3",
        "-0",
        "-1",
        "-2",
        "-3",
        "-4",
        "-6",
        "--ipv4",
        "--ipv6",
        "--tlsv1",
        "--tlsv1.0",
        "--tlsv1.1",
        "--tlsv1.2",
        "--tlsv1.3",
        "--ssl-no-revoke",
        "--no-sessionid",
        "--no-alpn",
        "--no-npn",
        "--tcp-nodelay",
        "--tcp-fastopen",
    }
)
# Options a copied request cannot carry into a spec: what to say instead.
_REFUSED = {
    "-T": "uploads a file",
    "--upload-file": "uploads a file",
    "-K": "reads a config file",
    "--config": "reads a config file",
    "--unix-socket": "talks to a Unix socket",
    "--abstract-unix-socket": "talks to a Unix socket",
    "--resolve": "changes where the host resolves to",
    "--connect-to": "changes where the host resolves to",
    "--location-trusted": "sends credentials to every host it is redirected to",
    "--digest": "uses digest authentication",
    "--ntlm": "uses NTLM authentication",
    "--negotiate": "uses Negotiate authentication",
    "--aws-sigv4": "signs requests with AWS SigV4",
    "--variable": "uses curl variables",
    "--expand-url": "uses curl variables",
    "--next": "sends several requests",
    "-:": "sends several requests",
    "--request-target": "sends a custom request target",
}


def shell_words(command: str) -> list[str]:
    """`command` split into words as a POSIX shell would (see the module).

    Raises:
        InvalidGeneratorError: an unclosed quote, a shell variable or command substitution, a
            second command, or a Windows `cmd` copy (`^` continuations).
    """
    if re.search(r"\^\r?\n", command) or '^"' in command:
        raise InvalidGeneratorError(
            "this looks like a Windows cmd copy (^ line continuations); copy the request as "
            "cURL (bash) instead"
        )
    words: list[str] = []
    current: list[str] = []
    started = False
    index = 0
    length = len(command)
    while index < length:
        char = command[index]
        if char == "\\":
            following = command[index + 1 : index + 2]
            if following == "\n":
                index += 2
                continue
            if following == "\r" and command[index + 2 : index + 3] == "\n":
                index += 3
                continue
            current.append(following)
            started = True
            index += 2
            continue
        if char in " \t\r\n":
            if started:
                words.append("".join(current))
                current, started = [], False
            index += 1
            continue
        if char == "'":
            end = command.find("'", index + 1)
            if end < 0:
                raise InvalidGeneratorError("the curl command has an unclosed ' quote")
            current.append(command[index + 1 : end])
            started = True
            index = end + 1
            continue
        if char == '"':
            index = _double_quoted(command, index + 1, current)
            started = True
            continue
        if char == "$":
            following = command[index + 1 : index + 2]
            if following == "'":
                index = _ansi_quoted(command, index + 2, current)
                started = True
                continue
            if following and (following.isalnum() or following in "_{(@*#?!$-"):
                raise InvalidGeneratorError(
                    "the curl command uses a shell variable or command substitution "
                    f"({command[index : index + 12]!r}…); paste its value instead"
                )
        if char == "#" and not started:
            newline = command.find("\n", index)
            index = length if newline < 0 else newline
            continue
        if char in _OPERATORS:
            raise InvalidGeneratorError(
                f"the curl command is followed by another command ({char!r}); copy only the "
                "curl command"
            )
        current.append(char)
        started = True
        index += 1
    if started:
        words.append("".join(current))
    return words


def _double_quoted(command: str, index: int, current: list[str]) -> int:
    while index < len(command):
        char = command[index]
        if char == '"':
            return index + 1
        if char == "\\" and command[index + 1 : index + 2] in ('"', "\\", "$", "`", "\n"):
            if command[index + 1] != "\n":
                current.append(command[index + 1])
            index += 2
            continue
        if char == "$" and re.match(r"[A-Za-z_{(]", command[index + 1 : index + 2]):
            raise InvalidGeneratorError(
                "the curl command uses a shell variable or command substitution inside double "
                f"quotes ({command[index : index + 12]!r}…); paste its value instead"
            )
        if char == "`":
            raise InvalidGeneratorError(
                "the curl command uses a command substitution (`…`); paste its output instead"
            )
        current.append(char)
        index += 1
    raise InvalidGeneratorError('the curl command has an unclosed " quote')


def _ansi_quoted(command: str, index: int, current: list[str]) -> int:
    """A `$'…'` word (ANSI-C quoting); byte escapes (`\\xHH`, octal) are UTF-8 bytes."""
    data = bytearray()
    while index < len(command):
        char = command[index]
        if char == "'":
            current.append(data.decode("utf-8", "replace"))
            return index + 1
        if char != "\\":
            data += char.encode("utf-8")
            index += 1
            continue
        following = command[index + 1 : index + 2]
        if following in _ANSI_ESCAPES:
            data += _ANSI_ESCAPES[following].encode()
            index += 2
        elif following in ("x", "u", "U"):
            digits = {"x": 2, "u": 4, "U": 8}[following]
            match = re.match(rf"[0-9A-Fa-f]{{1,{digits}}}", command[index + 2 :])
            if match is None:
                data += f"\\{following}".encode()
                index += 2
                continue
            value = int(match.group(0), 16)
            data += bytes([value]) if following == "x" else chr(value).encode("utf-8", "replace")
            index += 2 + match.end()
        elif following.isdigit() and following < "8":
            match = re.match(r"[0-7]{1,3}", command[index + 1 :])
            assert match is not None
            data.append(int(match.group(0), 8) & 0xFF)
            index += 1 + match.end()
        elif following == "c" and index + 2 < len(command):
            data.append(ord(command[index + 2]) & 0x1F)
            index += 3
        else:
            data += f"\\{following}".encode()
            index += 2
    raise InvalidGeneratorError("the curl command has an unclosed $' quote")


def parse_curl(command: str) -> CopiedRequest:
    """The request a curl command sends.

    Raises:
        InvalidGeneratorError: not a curl command, no URL or two, an option curl does not have
            or that a spec cannot carry (reading a file, uploading, another auth scheme).
    """
    words = shell_words(command.strip())
    if not words or words[0].rsplit("/", 1)[-1] not in ("curl", "curl.exe"):
        raise InvalidGeneratorError(
            "not a curl command: it should start with curl (as 'Copy as cURL' writes it)"
        )
    state = _Curl()
    arguments = iter(words[1:])
    only_urls = False
    for word in arguments:
        if only_urls or not word.startswith("-") or word == "-":
            state.add_url(word)
        elif word == "--":
            only_urls = True
        elif word.startswith("--"):
            name, equals, attached = word.partition("=")
            if not (equals and name in _VALUED):
                name, attached = word, ""
            _one_option(state, name, attached or None, arguments)
        else:
            # Short options cluster (`-sSL`) and take their value attached (`-XPOST`).
            for position in range(1, len(word)):
                name = f"-{word[position]}"
                rest = word[position + 1 :]
                if name in _VALUED:
                    _one_option(state, name, rest or None, arguments)
                    break
                _one_option(state, name, None, arguments)
    return state.request()


def _one_option(state: _Curl, name: str, attached: str | None, rest: Iterator[str]) -> None:
    if name in _REFUSED:
        raise InvalidGeneratorError(
            f"curl option {name} {_REFUSED[name]}, which a spec cannot do; leave it out"
        )
    if name in _FLAGS:
        state.flag(_FLAGS[name])
    elif name in _VALUED:
        value = attached if attached is not None else next(rest, None)
        if value is None:
            raise InvalidGeneratorError(f"curl option {name} needs a value")
        state.option(_VALUED[name], value, name)
    elif name not in _SKIPPED_FLAGS:
        raise InvalidGeneratorError(
            f"unknown or unsupported curl option {name!r}; remove it and import again"
        )


class _Curl:
    """What the options say so far."""

    def __init__(self) -> None:
        self.urls: list[str] = []
        self.method: str | None = None
        self.headers: list[tuple[str, str]] = []
        self.data: list[str] = []
        self.form: list[tuple[str, str]] = []
        self.json = False
        self.get = False
        self.head = False
        self.basic_auth: str | None = None
        self.cookies: list[str] = []
        self.options: dict[str, object] = {}

    def add_url(self, word: str) -> None:
        self.urls.append(word)

    def flag(self, name: str) -> None:
        if name == "insecure":
            self.options["verify"] = False
        elif name == "get":
            self.get = True
        elif name == "head":
            self.head = True

    def option(self, name: str, value: str, given: str) -> None:
        if name == "request":
            self.method = value.upper()
        elif name == "header":
            self._header(value)
        elif name in ("data", "data-binary", "data-raw"):
            if name != "data-raw" and value.startswith("@"):
                raise _reads_file(given, value)
            self.data.append(value)
        elif name == "data-urlencode":
            self.data.append(_urlencoded(value, given))
        elif name == "json":
            if value.startswith("@"):
                raise _reads_file(given, value)
            self.data.append(value)
            self.json = True
        elif name in ("form", "form-string"):
            self.form.append(_form_field(value, given, literal=name == "form-string"))
        elif name == "user":
            if ":" not in value:
                raise InvalidGeneratorError(
                    f"curl option {given} gives a user without a password (curl would ask for "
                    "it); write it as user:password"
                )
            self.basic_auth = value
        elif name == "cookie":
            if "=" not in value:
                raise _reads_file(given, value)
            self.cookies.append(value.strip().rstrip(";"))
        elif name == "user-agent":
            self.headers.append(("User-Agent", value))
        elif name == "referer":
            self.headers.append(("Referer", value.split(";auto", 1)[0]))
        elif name == "url":
            self.add_url(value)
        elif name == "oauth2-bearer":
            self.headers.append(("Authorization", f"Bearer {value}"))
        elif name == "proxy":
            self.options["proxy"] = value if "://" in value else f"http://{value}"
        elif name == "max-time":
            self.options["timeout"] = _seconds(value, given)
        elif name == "max-redirs":
            self.options["max_redirects"] = _count(value, given)
        elif name == "cacert":
            self.options["verify"] = value
        elif name == "cert":
            if re.search(r"(?<!\\):", value):  # curl's `--cert FILE:PASSWORD`
                raise InvalidGeneratorError(
                    f"curl option {given} gives the key's password after ':'; jib does not take "
                    "key passwords: decrypt the key (openssl pkey -in KEY.pem -out PLAIN.pem) "
                    "and leave the password out"
                )
            self.options["cert"] = value.replace("\\:", ":")
        elif name == "key":
            self.options["cert_keyfile"] = value
        elif name == "cert-type" and value.upper() != "PEM":
            raise InvalidGeneratorError(
                f"curl option {given} {value}: only PEM certificates and keys can be used"
            )

    def _header(self, value: str) -> None:
        name, colon, rest = value.partition(":")
        if not colon:
            if value.endswith(";"):  # `-H 'X-Empty;'`: a header with an empty value
                self.headers.append((value[:-1].strip(), ""))
                return
            raise InvalidGeneratorError(f"curl header {redact(value, [])!r} is not Name: value")
        if rest:  # `-H 'Accept:'` removes curl's own header: nothing to send
            self.headers.append((name.strip(), rest.strip()))

    def request(self) -> CopiedRequest:
        if not self.urls:
            raise InvalidGeneratorError("the curl command names no URL")
        if len(self.urls) > 1:
            raise InvalidGeneratorError(
                f"the curl command names {len(self.urls)} URLs; import one request at a time"
            )
        url = self.urls[0]
        if "://" not in url:
            url = f"http://{url}"  # as curl does
        headers = list(self.headers)
        if self.cookies:
            headers.append(("Cookie", "; ".join(self.cookies)))
        has = {name.lower() for name, _ in headers}
        body: str | None = "&".join(self.data) if self.data else None
        method = self.method
        if self.form:
            if body is not None:
                raise InvalidGeneratorError(
                    "the curl command mixes -d/--data and -F/--form; curl refuses that too"
                )
            # curl adds the boundary to a Content-Type the command sets without one.
            kind = f"multipart/form-data; boundary={MULTIPART_BOUNDARY}"
            headers = [
                (name, f"{value}; boundary={MULTIPART_BOUNDARY}")
                if name.lower() == "content-type" and "boundary=" not in value.lower()
                else (name, value)
                for name, value in headers
            ]
            if "content-type" not in has:
                headers.append(("Content-Type", kind))
        elif body is not None and self.get:
            url = f"{url}{'&' if '?' in url else '?'}{body}"
            body = None
            method = method or "GET"
        elif body is not None:
            if self.json:
                if "content-type" not in has:
                    headers.append(("Content-Type", "application/json"))
                if "accept" not in has:
                    headers.append(("Accept", "application/json"))
            elif "content-type" not in has:
                headers.append(("Content-Type", "application/x-www-form-urlencoded"))
        if method is None:
            method = "HEAD" if self.head else "POST" if (body is not None or self.form) else "GET"
        return CopiedRequest(
            method,
            url,
            headers,
            body,
            basic_auth=self.basic_auth,
            options=dict(self.options),
            form=self.form or None,
        )


def _reads_file(given: str, value: str) -> InvalidGeneratorError:
    return InvalidGeneratorError(
        f"curl option {given} {value!r} reads a file; paste the file's content into the "
        "command instead (--data-raw '…')"
    )


def _urlencoded(value: str, given: str) -> str:
    """`--data-urlencode`'s forms: `content`, `=content`, `name=content` (`[name]@file`
    refused)."""
    name, equals, content = value.partition("=")
    if not equals:
        if "@" in value:
            raise _reads_file(given, value)
        return quote_plus(value, safe="")
    if not name:
        return quote_plus(content, safe="")
    return f"{name}={quote_plus(content, safe='')}"


def _form_field(value: str, given: str, *, literal: bool) -> tuple[str, str]:
    name, equals, content = value.partition("=")
    if not equals:
        raise InvalidGeneratorError(f"curl option {given} {redact(value, [])!r} is not name=value")
    if not literal:
        if content.startswith(("@", "<")):
            raise _reads_file(given, value)
        content = re.sub(r";(?:type|filename|headers|encoder)=[^;]*", "", content)
    return name, content


def _seconds(value: str, given: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if seconds <= 0:
        raise InvalidGeneratorError(f"curl option {given} {value!r} is not a number of seconds")
    return seconds


def _count(value: str, given: str) -> int:
    if not value.isdigit():
        raise InvalidGeneratorError(f"curl option {given} {value!r} is not a count")
    return int(value)

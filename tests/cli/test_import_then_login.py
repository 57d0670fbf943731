"""From a copied request to `jib run` against a chatbot behind a form login, as a user does it:
log in in the browser and copy the chat request (a session cookie, a CSRF token), import it
with `jib spec import --no-cookies --from-state`, add the login as `steps:`, run 100 prompts.
The target is the example server's login bot (`/bot/…`, see `tests.generator.http.targets`)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from jib.storage import open_store
from jib.trust import TrustPolicy
from tests.cli.conftest import JibRunner, assert_one_clean_error_line
from tests.generator.http.server import RunningServer, serve
from tests.generator.http.targets import PASSWORD

LOGIN_STEPS = """\
steps:
  - name: login page
    request: {{url: "{base}/bot/login", method: GET}}
    extract:
      csrf: {{regex: 'name="csrf" value="([^"]+)"'}}
    rerun_on: [401]
  - name: login
    request:
      url: {base}/bot/login
      method: POST
      headers: {{Content-Type: application/x-www-form-urlencoded}}
      transforms:
        - type: jinja
          pattern: "username=ada&password={{{{ api_key | urlencode }}}}&csrf={{{{ state.csrf }}}}"
    extract:
      sid: {{cookie: sid}}
"""


@pytest.fixture
def bot() -> Iterator[RunningServer]:
    with serve() as running:
        yield running


def copy_the_chat_request(base: str) -> tuple[str, str, str]:
    """Log in as a browser does, and copy the chat request as Firefox's dev tools show it
    (raw headers, then the body); returns the copy, its session cookie and CSRF token."""
    with httpx.Client(base_url=base, follow_redirects=True) as browser:
        page = browser.get("/bot/login").text
        match = re.search(r'name="csrf" value="([^"]+)"', page)
        assert match is not None, page
        csrf = match.group(1)
        form = {"username": "ada", "password": PASSWORD, "csrf": csrf}
        assert browser.post("/bot/login", data=form).status_code == 200
        sid = browser.cookies["sid"]
    host = base.removeprefix("http://")
    body = json.dumps({"message": "{PROMPT}"})
    copy = (
        "POST /bot/chat HTTP/1.1\n"
        f"Host: {host}\n"
        "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0\n"
        "Accept: application/json\n"
        "Accept-Language: en-GB,en;q=0.5\n"
        "Accept-Encoding: gzip, deflate, br, zstd\n"
        f"Referer: {base}/bot/home\n"
        "Content-Type: application/json\n"
        f"X-CSRF-Token: {csrf}\n"
        f"Content-Length: {len(body)}\n"
        f"Origin: {base}\n"
        "Connection: keep-alive\n"
        f"Cookie: pre=pre-1; sid={sid}\n"
        "Sec-Fetch-Mode: cors\n"
        "\n"
        f"{body}\n"
    )
    return copy, sid, csrf


def import_the_copy(jib: JibRunner, bot: RunningServer, folder: Path) -> tuple[str, str, str]:
    """Copy the chat request into copied.txt and `jib spec import` it into bot.yaml, leaving
    the cookie out and reading the CSRF token from state; the identifier, and the copy's
    session cookie and CSRF token."""
    copy, copied_sid, copied_csrf = copy_the_chat_request(bot.url)
    (folder / "copied.txt").write_text(copy)
    imported = jib(
        "spec", "import", "copied.txt", "--no-cookies", "--from-state", "X-CSRF-Token=csrf",
        "--response-path", "$.reply", "-m", "support-bot", "-o", "bot.yaml",
    )  # fmt: skip
    assert imported.code == 0, imported.stderr
    assert imported.stderr == ""  # nothing secret is left in the spec: no variable to set
    written = (folder / "bot.yaml").read_text()
    spec = yaml.safe_load(written)
    assert spec["request"]["url"] == f"{bot.url}/bot/chat"
    assert spec["request"]["headers"]["X-CSRF-Token"] == "{{ state.csrf }}"
    assert "Cookie" not in spec["request"]["headers"]
    for text in (imported.stdout, written):
        assert copied_sid not in text
        assert copied_csrf not in text
    identifier = imported.stdout.strip().splitlines()[-1]
    assert identifier == "http!support-bot,spec=@bot.yaml"
    return identifier, copied_sid, copied_csrf


def add_the_login(bot: RunningServer, folder: Path) -> None:
    """What the user adds to bot.yaml: the login, as "Log in with steps" describes it."""
    with (folder / "bot.yaml").open("a") as file:
        file.write(LOGIN_STEPS.format(base=bot.url))


def test_an_imported_spec_with_a_login_step_runs_100_prompts_and_logs_in_again_once(
    jib: JibRunner, bot: RunningServer, tmp_path: Path, default_store: Path
) -> None:
    identifier, copied_sid, copied_csrf = import_the_copy(jib, bot, tmp_path)
    add_the_login(bot, tmp_path)
    prompts = [f'question {n}: "where" & when = {n}+{n} é' for n in range(100)]
    (tmp_path / "prompts.txt").write_text("\n".join(prompts) + "\n")
    targets = bot.state.targets
    logins_before = targets.logins  # the browser's, for the copy
    targets.expire_after = 40  # every session expires after the 40th answer

    result = jib(
        "run", f"{identifier},api_key=env:BOT_PASSWORD,max_connections=20",
        "--prompts", "prompts.txt", "-r", "imported", "--no-progress",
        env_update={"BOT_PASSWORD": PASSWORD},
    )  # fmt: skip

    assert result.code == 0, result.stderr
    assert targets.logins - logins_before == 2  # the first login, and one when it expired
    assert len(targets.chats) > 100  # some were refused (401) when the session expired
    assert all(chat["sid"] != copied_sid for chat in targets.chats)
    assert len({chat["sid"] for chat in targets.chats}) == 2
    allowed = TrustPolicy(allow_env={"BOT_PASSWORD"})  # to read the chats back with their generator
    with open_store(default_store, trusted=allowed) as store:
        chats = store.query(run="imported")
    assert len(chats) == 100
    assert all(chat.content == f"Bot: {chat.messages[-1].content}" for chat in chats)
    assert sorted(chat.messages[-1].content for chat in chats) == sorted(prompts)
    raw = b"".join(path.read_bytes() for path in default_store.parent.iterdir())
    for secret in (PASSWORD, "sid-", copied_csrf):
        assert secret not in result.stdout + result.stderr
        assert secret.encode() not in raw


def test_a_wrong_password_is_one_error_line_without_it(
    jib: JibRunner, bot: RunningServer, tmp_path: Path
) -> None:
    identifier, _, _ = import_the_copy(jib, bot, tmp_path)
    add_the_login(bot, tmp_path)

    result = jib(
        "chat", "--no-store", f"{identifier},api_key=env:BOT_PASSWORD", "hello",
        env_update={"BOT_PASSWORD": "hunter3"},
    )  # fmt: skip

    assert_one_clean_error_line(result, "AuthenticationError", "step 'login' answered 403")
    assert "hunter3" not in result.stdout + result.stderr
    assert bot.state.targets.chats == []

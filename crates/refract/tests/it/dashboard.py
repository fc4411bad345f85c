"""Browser scenarios of the web dashboard (crates/refract/tests/it/dashboard.rs runs this file).

Playwright for Python drives Debian's chromium against a real `refract serve`. Inputs come from
the environment (set by the Rust test); any failed check raises, and the exit status says so.

Checked on every page visited: no console error, no `rmk_`/`rxk_` key or known secret in the
HTML (except the one-time reveal page of a key the scenario itself just created), and every
visible form control has a label.
"""

import json
import os
import re
import sys
import time
import urllib.request

from playwright.sync_api import sync_playwright, expect

URL = os.environ["DASH_URL"]
KEY = os.environ["DASH_KEY"]
SECRETS = json.loads(os.environ["DASH_SECRETS"])
OTHER_DB = os.environ["DASH_OTHER_DB"]
MYSQL = json.loads(os.environ["DASH_MYSQL"])
SCHEMA = os.environ["DASH_SCHEMA"]
SHOTS = os.environ.get("DASH_SCREENSHOTS")  # a directory: write screenshots of the main pages
CHROMIUM = os.environ.get("DASH_CHROMIUM", "/usr/bin/chromium")
REDIS = os.environ.get("DASH_MANAGED_REDIS") == "1"
PG = os.environ.get("DASH_MANAGED_POSTGRES") == "1"
LONG = 180_000  # ms: provisioning on a busy 2-core machine

console_errors = []
expected_error_urls = set()
pages_checked = []
step_started = time.time()


def step(name):
    global step_started
    now = time.time()
    print(f"[dashboard] {name} (+{now - step_started:.1f}s)", flush=True)
    step_started = now


def api(method, path, body=None):
    req = urllib.request.Request(URL + path, method=method)
    req.add_header("Authorization", "Bearer " + KEY)
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, data=data, timeout=30) as r:
            text = r.read()
            return r.status, (json.loads(text) if text else None)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def check_page(page, reveal=None):
    """Secrets, labels; `reveal` is the one secret this page may show (a one-time reveal)."""
    html = page.content()
    for s in SECRETS:
        assert s not in html, f"a known secret is in the HTML of {page.url}"
    for m in re.findall(r"r[mx]k_[0-9A-Za-z]+\.[0-9A-Za-z]+", html):
        assert m == reveal, f"a key ({m[:8]}…) is in the HTML of {page.url}"
    unlabeled = page.evaluate(
        """() => [...document.querySelectorAll('input, select, textarea')]
            .filter(e => e.type !== 'hidden')
            .filter(e => !(e.id && document.querySelector(`label[for="${e.id}"]`))
                         && !e.getAttribute('aria-label') && !e.closest('label'))
            .map(e => e.outerHTML)"""
    )
    assert not unlabeled, f"controls without a label on {page.url}: {unlabeled}"
    nameless = page.evaluate(
        """() => [...document.querySelectorAll('button, a[href]')]
            .filter(e => !e.textContent.trim() && !e.getAttribute('aria-label'))
            .map(e => e.outerHTML)"""
    )
    assert not nameless, f"buttons or links without a name on {page.url}: {nameless}"
    assert page.evaluate("() => document.documentElement.lang") == "en"
    assert page.locator("h1").count() == 1, f"not exactly one h1 on {page.url}"
    pages_checked.append(page.url)


def shot(page, name):
    if SHOTS:
        page.screenshot(path=os.path.join(SHOTS, f"dashboard-{name}.png"), full_page=True)


def tab_to(page, element_id=None, action=None, limit=120):
    """Moves the focus with Tab only until the element with `element_id` (or the button of
    `action`) has it."""
    for _ in range(limit):
        focused = page.evaluate(
            "() => document.activeElement ? [document.activeElement.id, document.activeElement.dataset.action || ''] : ['', '']"
        )
        if (element_id and focused[0] == element_id) or (action and focused[1] == action):
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"{element_id or action} cannot be reached with Tab on {page.url}")


def wait_status(page, status, timeout=LONG):
    expect(page.locator("#status-badge")).to_have_attribute("data-status", status, timeout=timeout)


def act(page, action):
    page.locator(f'button[data-action="{action}"]:not([disabled])').click()


def main():
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        # Generous defaults: the suite shares 2 cores with builds and other tests.
        context.set_default_timeout(30_000)
        expect.set_options(timeout=20_000)
        page = context.new_page()

        def on_console(msg):
            if msg.type == "error":
                url = (msg.location or {}).get("url", "")
                if url in expected_error_urls or page.url in expected_error_urls:
                    return
                console_errors.append(f"{page.url}: {msg.text}")

        page.on("console", on_console)
        page.on("pageerror", lambda e: console_errors.append(f"{page.url}: {e}"))
        page.on("dialog", lambda d: d.accept())

        # ---- sign in, with the keyboard only
        step("sign in (keyboard only)")
        page.goto(URL + "/")
        expect(page).to_have_url(URL + "/ui/sign-in")
        check_page(page)
        expected_error_urls.add(URL + "/ui/sign-in")
        page.keyboard.type("rmk_not.a-key")
        page.keyboard.press("Enter")
        expect(page.locator("#sign-in-error")).to_be_visible()
        expected_error_urls.discard(URL + "/ui/sign-in")
        page.locator("#key").focus()
        page.keyboard.type(KEY)
        page.keyboard.press("Enter")
        expect(page).to_have_url(URL + "/ui/")
        cookies = context.cookies()
        session = [c for c in cookies if c["name"] == "refract_session"]
        assert session and session[0]["httpOnly"] and session[0]["sameSite"] == "Strict", cookies
        assert all(KEY not in c["value"] for c in cookies)
        assert page.evaluate("() => document.cookie") == "", "the session cookie is readable by scripts"
        expect(page.get_by_text("No databases yet")).to_be_visible()
        check_page(page)
        shot(page, "empty")

        # ---- CSRF: a form post without the token is refused
        step("CSRF")
        r = page.request.post(URL + "/ui/keys", form={"name": "no-token"}, max_redirects=0)
        assert r.status == 403, r.status

        # ---- a connection to the test MariaDB: test first, then create with a database
        step("connection: test, then create")
        page.get_by_role("link", name="Create a connection").click()
        expect(page).to_have_url(URL + "/ui/connections")
        check_page(page)
        page.fill("#c-name", "shop source")
        page.select_option("#c-backend", "mysql")
        page.fill("#c-host", MYSQL["host"])
        page.fill("#c-port", str(MYSQL["port"]))
        page.fill("#c-user", MYSQL["user"])
        page.fill("#c-password", "not-the-password")
        page.fill("#c-schemas", SCHEMA)
        page.select_option("#c-sync", "poll")
        expect(page.locator("#create-connection")).to_be_disabled()
        page.click("#test-connection")
        expect(page.locator("#connection-test")).to_have_attribute("data-ok", "false", timeout=30_000)
        expect(page.locator("#create-connection")).to_have_text("Create anyway (the test failed)")
        page.fill("#c-password", MYSQL["password"])
        expect(page.locator("#create-connection")).to_be_disabled()
        page.click("#test-connection")
        expect(page.locator("#connection-test")).to_have_attribute("data-ok", "true", timeout=30_000)
        expect(page.locator("#create-connection")).to_be_enabled()
        expect(page.locator("#connection-test")).to_contain_text("Readiness per sync mode")
        check_page(page)
        shot(page, "connections")
        page.fill("#c-db-name", "shop")
        page.fill("#c-db-schema", SCHEMA)
        page.get_by_role("button", name="Create connection").click()
        expect(page).to_have_url(re.compile(r"/ui/databases/[0-9a-f-]{36}$"))
        db_url = page.url
        db_id = db_url.rsplit("/", 1)[1]
        wait_status(page, "registered", 10_000)
        expect(page.locator('button[data-action="pause"]')).to_be_disabled()
        expect(page.locator("#why-pause")).not_to_be_empty()
        check_page(page)

        # ---- provision and watch it reach running without a reload
        step("provision, live progress")
        act(page, "provision")
        expect(page).to_have_url(db_url)
        page.evaluate("() => { window.__noReload = 1; }")
        expect(page.locator("#status-badge")).not_to_have_attribute("data-status", "registered", timeout=30_000)
        wait_status(page, "running")
        expect(page.locator("#events")).to_contain_text("→ running", timeout=10_000)
        expect(page.locator("#builds")).to_contain_text("succeeded")
        assert page.evaluate("() => window.__noReload") == 1, "the page was reloaded"
        expect(page.locator("#row-counts")).to_be_visible(timeout=30_000)
        page.reload()
        expect(page.locator("#events")).to_contain_text("running")
        expect(page.locator("#builds")).to_contain_text("succeeded")
        check_page(page)
        page.locator("#builds a").first.click()
        expect(page.locator("h1")).to_contain_text("Build")
        check_page(page)
        page.go_back()

        # ---- keyboard: the actions are reachable with Tab
        step("keyboard reachability of actions")
        page.locator("body").focus()
        reached = set()
        for _ in range(80):
            page.keyboard.press("Tab")
            reached.add(page.evaluate("() => document.activeElement && (document.activeElement.dataset.action || document.activeElement.id || document.activeElement.textContent.trim())"))
        assert "pause" in reached and "qk-name" in reached, reached

        # ---- query playground
        step("playground: rows, error position, explain")
        page.goto(URL + f"/ui/databases/{db_id}/query")
        check_page(page)
        expect(page.locator("button.example").first).to_be_visible()
        page.fill("#q", "items(ORDER BY id LIMIT 5) { id name }")
        page.get_by_role("button", name="Run", exact=True).click()
        expect(page.locator("#result-table tbody tr")).to_have_count(5, timeout=30_000)
        expect(page.locator("#result-table")).to_contain_text("widget")
        expect(page.locator("#curl")).to_contain_text("$REFRACT_QUERY_KEY")
        check_page(page)
        shot(page, "playground")
        page.locator("#q").focus()
        page.keyboard.press("Control+A")
        page.keyboard.type("items(LIMIT 5) { id nmae }")
        page.keyboard.press("Control+Enter")
        expect(page.locator("#query-error")).to_contain_text("line 1, column")
        expect(page.locator("#error-position mark")).to_have_text("n")
        check_page(page)
        page.fill("#q", "items(id = 1) { id }")
        page.get_by_role("button", name="Explain").click()
        expect(page.locator("#result-json")).to_contain_text("pk", timeout=30_000)

        # ---- query key: create (shown once), revoke
        step("charts, query key create and revoke")
        page.goto(db_url)
        expect(page.locator("#chart-qps")).to_be_visible(timeout=20_000)
        expect(page.locator("#chart-p99")).to_be_visible()
        check_page(page)
        shot(page, "database")
        page.fill("#qk-name", "app key")
        page.get_by_role("button", name="Create query key").click()
        secret = page.locator("#secret").inner_text().strip()
        assert secret.startswith("rxk_"), secret
        check_page(page, reveal=secret)
        page.get_by_role("link", name="Done").click()
        assert secret not in page.content()
        row = page.locator("#query-keys tr", has_text="app key")
        row.get_by_role("button", name="Revoke query key app key").click()
        expect(page.locator("#query-keys tr", has_text="app key").locator("td").nth(3)).not_to_be_empty()
        check_page(page)

        # ---- runtime settings, then "Apply settings" (reconfigure) deploys them
        step("runtime settings and reconfigure")
        page.select_option("#log_level", "debug")
        page.get_by_role("button", name="Save runtime settings").click()
        expect(page.locator("#pending")).to_be_visible()
        act(page, "reconfigure")
        wait_status(page, "running")
        expect(page.locator("#operation")).to_have_count(0, timeout=LONG)
        page.reload()
        expect(page.locator("#log_level")).to_have_value("debug")
        expect(page.locator("#pending")).to_have_count(0)

        # ---- pause schedule and tags
        step("pause schedule and tags")
        page.fill("#pause_at", "23:00")
        page.fill("#resume_at", "06:30")
        page.fill("#days", "1,2,3,4,5")
        page.fill("#tags", "prod:red, team-a:blue")
        page.get_by_role("button", name="Save schedule and tags").click()
        expect(page.locator("#pause_at")).to_have_value("23:00")
        expect(page.locator(".tag.red")).to_have_text("prod")
        page.fill("#pause_at", "")
        page.fill("#resume_at", "")
        page.get_by_role("button", name="Save schedule and tags").click()
        expect(page.locator("#pause_at")).to_have_value("")
        page.fill("#tags", "prod:nocolor")
        expected_error_urls.add(db_url + "/settings")
        page.get_by_role("button", name="Save schedule and tags").click()
        expect(page.locator(".error-text")).to_contain_text("color")
        expect(page.locator("h1")).to_have_text("Invalid request")
        check_page(page)
        expected_error_urls.discard(db_url + "/settings")
        page.goto(db_url)

        # ---- pause and resume
        step("pause and resume (pause with the keyboard)")
        page.locator("body").focus()
        tab_to(page, action="pause")
        page.keyboard.press("Enter")
        wait_status(page, "paused")
        act(page, "resume")
        wait_status(page, "running")

        # ---- management key: create (shown once), revoke
        step("management key create and revoke")
        page.goto(URL + "/ui/keys")
        check_page(page)
        # Keyboard only: Tab to the name, type it, Enter submits.
        tab_to(page, "k-name")
        page.keyboard.type("ci key")
        page.keyboard.press("Enter")
        mkey = page.locator("#secret").inner_text().strip()
        assert mkey.startswith("rmk_"), mkey
        check_page(page, reveal=mkey)
        page.goto(URL + "/ui/keys")
        shot(page, "keys")
        page.get_by_role("button", name="Revoke management key ci key").click()
        expect(page.locator("#management-keys tr", has_text="ci key").locator("td").nth(5)).not_to_be_empty()
        req = urllib.request.Request(URL + "/v1/connections", headers={"Authorization": "Bearer " + mkey})
        try:
            urllib.request.urlopen(req, timeout=10)
            raise AssertionError("a revoked management key still works")
        except urllib.error.HTTPError as e:
            assert e.code == 401, e.code

        # ---- another customer's database: 404, as in the API
        step("foreign and unknown ids are 404 pages")
        for path in (f"/ui/databases/{OTHER_DB}", "/ui/databases/not-a-uuid", "/ui/no-such-page"):
            expected_error_urls.add(URL + path)
            r = page.goto(URL + path)
            assert r.status == 404, (path, r.status)
            expect(page.locator("h1")).to_have_text("Not found")
            check_page(page)

        # ---- sign out: the session is dead, its playground key revoked
        step("sign out")
        page.goto(db_url)
        old_cookie = [c for c in context.cookies() if c["name"] == "refract_session"][0]["value"]
        page.get_by_role("button", name="Sign out").click()
        expect(page).to_have_url(URL + "/ui/sign-in")
        r = page.request.get(URL + "/ui/", headers={"Cookie": "refract_session=" + old_cookie}, max_redirects=0)
        assert r.status == 303 and r.headers["location"] == "/ui/sign-in", (r.status, r.headers)
        status, keys = api("GET", f"/v1/databases/{db_id}/api-keys")
        assert status == 200, keys
        session_keys = [k for k in keys if k["name"] == "dashboard session"]
        assert session_keys and all(k.get("revokedAt") for k in session_keys), keys

        # ---- sign in again; terminate and delete
        step("terminate and delete")
        page.fill("#key", KEY)
        page.get_by_role("button", name="Sign in").click()
        page.goto(db_url)
        act(page, "terminate")
        wait_status(page, "terminated")
        act(page, "delete")
        expect(page).to_have_url(URL + "/ui/")
        expect(page.get_by_text("No databases yet")).to_be_visible()
        check_page(page)

        # ---- why one failed: a source nobody listens on; lastError with advice, then delete
        step("a failed database explains itself")
        page.goto(URL + "/ui/connections")
        page.fill("#c-name", "nowhere")
        page.fill("#c-host", "127.0.0.1")
        page.fill("#c-port", "1")
        page.fill("#c-user", "u")
        page.fill("#c-password", "unused-password-x1")
        page.fill("#c-schemas", "x")
        page.click("#test-connection")
        expect(page.locator("#connection-test")).to_have_attribute("data-ok", "false", timeout=30_000)
        page.fill("#c-db-name", "broken")
        page.fill("#c-db-schema", "x")
        page.get_by_role("button", name="Create anyway (the test failed)").click()
        expect(page).to_have_url(re.compile(r"/ui/databases/[0-9a-f-]{36}$"))
        act(page, "provision")
        wait_status(page, "failed", 60_000)
        expect(page.locator("#events")).to_contain_text("→ failed", timeout=10_000)
        expect(page.locator("#last-error")).to_be_visible()
        expect(page.locator("#advice")).to_contain_text("could not be reached")
        check_page(page)
        shot(page, "failed")
        act(page, "delete")
        expect(page).to_have_url(URL + "/ui/")
        page.goto(URL + "/ui/connections")
        page.get_by_role("link", name="nowhere").click()
        page.get_by_role("button", name="Delete connection").click()
        expect(page).to_have_url(URL + "/ui/connections")

        # ---- the connection: edit (the password is never shown), test, delete
        step("connection edit, test, delete")
        page.goto(URL + "/ui/connections")
        page.get_by_role("link", name="shop source").click()
        assert MYSQL["password"] not in page.content()
        page.fill("#e-name", "shop source renamed")
        page.get_by_role("button", name="Save").click()
        expect(page.locator("h1")).to_have_text("shop source renamed")
        page.get_by_role("button", name="Test stored credentials").click()
        expect(page.locator("#connection-test")).to_have_attribute("data-ok", "true", timeout=30_000)
        check_page(page)
        page.get_by_role("button", name="Delete connection").click()
        expect(page).to_have_url(URL + "/ui/connections")
        expect(page.get_by_text("No connections yet")).to_be_visible()

        # ---- managed Redis: create, credentials on click, delete
        if REDIS:
            step("managed redis")
            page.goto(URL + "/ui/servers")
            check_page(page)
            page.fill("#s-name", "cache")
            page.select_option("#s-engine", "redis")
            page.get_by_role("button", name="Create server").click()
            expect(page).to_have_url(re.compile(r"/ui/servers/db_[0-9a-z]+$"))
            server_url = page.url
            expect(page.locator("#server-status")).to_have_attribute("data-status", "running", timeout=LONG)
            check_page(page)
            shot(page, "server")
            page.get_by_role("button", name="Reveal credentials").click()
            expect(page.locator("#credentials")).to_contain_text("rediss://")
            page.goto(server_url)
            assert "rediss://default:" not in page.content()
            expect(page.locator('button[data-action="start"]')).to_be_disabled()
            act(page, "stop")
            expect(page.locator("#server-status")).to_have_attribute("data-status", "stopped", timeout=60_000)
            act(page, "start")
            expect(page.locator("#server-status")).to_have_attribute("data-status", "running", timeout=LONG)
            check_page(page)
            page.get_by_role("button", name="Delete server").click()
            expect(page).to_have_url(URL + "/ui/servers")

        # ---- managed PostgreSQL served as a read API (a /v1 connection and database over it)
        if PG:
            step("managed postgresql, serve it as a read API")
            page.goto(URL + "/ui/servers")
            page.fill("#s-name", "main-pg")
            page.select_option("#s-engine", "postgresql")
            page.get_by_role("button", name="Create server").click()
            expect(page).to_have_url(re.compile(r"/ui/servers/db_[0-9a-z]+$"))
            pg_url = page.url
            expect(page.locator("#server-status")).to_have_attribute("data-status", "running", timeout=LONG)
            page.reload()
            page.fill("#serve-name", "main-pg read")
            page.get_by_role("button", name="Serve as a read API").click()
            expect(page).to_have_url(re.compile(r"/ui/connections/[0-9a-f-]{36}$"))
            conn_url = page.url
            expect(page.locator("h1")).to_have_text("main-pg read")
            check_page(page)
            page.fill("#d-name", "pg api")
            page.get_by_role("button", name="Add database").click()
            expect(page).to_have_url(re.compile(r"/ui/databases/[0-9a-f-]{36}$"))
            wait_status(page, "registered", 10_000)
            check_page(page)
            act(page, "delete")
            expect(page).to_have_url(URL + "/ui/")
            page.goto(conn_url)
            page.get_by_role("button", name="Delete connection").click()
            expect(page).to_have_url(URL + "/ui/connections")
            page.goto(pg_url)
            page.get_by_role("button", name="Delete server").click()
            expect(page).to_have_url(URL + "/ui/servers")

        assert not console_errors, "console errors:\n" + "\n".join(console_errors)
        browser.close()
    print(f"[dashboard] ok: {len(pages_checked)} page views checked", flush=True)


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # the Rust test prints this output
        print(f"[dashboard] FAILED: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        raise

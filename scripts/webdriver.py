"""The W3C WebDriver client the browser checks share: standard library only,
so nothing to install beyond Debian's chromium and chromium-driver.

`browser(timeout)` starts chromedriver (CHROMEDRIVER, default
/usr/bin/chromedriver) on a free port with a headless Chromium (CHROMIUM,
default /usr/bin/chromium) and stops both when the block ends; a check
raises `CheckFailed` when the page does not do what it should, and
`csp_violations(driver)` lists what the page's Content-Security-Policy blocked.
"""

import contextlib
import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request

ELEMENT = "element-6066-11e4-a52e-4f735466cecf"  # W3C WebDriver's element reference key


class CannotRun(Exception):
    """The browser could not be started: the check did not run."""


class CheckFailed(Exception):
    """The page did not do what it should."""


class WebDriver:
    """The few W3C WebDriver commands the check needs, over urllib."""

    def __init__(self, port, timeout):
        self.base = f"http://127.0.0.1:{port}"
        self.timeout = timeout
        self.session = None

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base + path, data=data, method=method,
            headers={"Content-Type": "application/json; charset=utf-8"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout + 30) as answer:
                return json.load(answer)["value"]
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")
            try:
                value = json.loads(detail)["value"]
                detail = f"{value['error']}: {value['message'].splitlines()[0]}"
            except (ValueError, KeyError, TypeError, IndexError):
                pass
            raise CheckFailed(f"WebDriver {method} {path}: {detail}") from None

    def start(self, chromium):
        capabilities = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,900"],
            },
            "goog:loggingPrefs": {"browser": "ALL"},
            "timeouts": {"pageLoad": int(self.timeout * 1000), "script": int(self.timeout * 1000)},
        }}}
        self.session = self.call("POST", "/session", capabilities)["sessionId"]

    def command(self, method, path, body=None):
        return self.call(method, f"/session/{self.session}{path}", body)

    def open(self, url):
        self.command("POST", "/url", {"url": url})

    def script(self, source, *args):
        return self.command("POST", "/execute/sync", {"script": source, "args": list(args)})

    def click(self, selector):
        element = self.command("POST", "/element", {"using": "css selector", "value": selector})
        self.command("POST", f"/element/{element[ELEMENT]}/click", {})

    def console(self):
        """The browser's console messages since the last call (a chromedriver extension)."""
        return self.command("POST", "/se/log", {"type": "browser"})

    def quit(self):
        if self.session:
            session, self.session = self.session, None
            try:
                self.call("DELETE", f"/session/{session}")
            except (OSError, CheckFailed):
                pass  # the browser may be gone already


def wait_for(what, timeout, probe):
    """Polls PROBE until it returns something other than None, for TIMEOUT seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise CheckFailed(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def ready(driver):
    try:
        return driver.call("GET", "/status").get("ready")
    except (OSError, CheckFailed):
        return False



def csp_violations(driver):
    """What the page's Content-Security-Policy blocked, from the console."""
    return [entry.get("message", "") for entry in driver.console()
            if "Content Security Policy" in entry.get("message", "")]


def page_text(driver):
    """The page's text and console, for a failure's message."""
    try:
        lines = ["--- page text ---",
                 driver.script("return document.body ? document.body.innerText : '';") or "",
                 "--- browser console ---"]
        lines += [f"{entry.get('level')}: {entry.get('message')}" for entry in driver.console()]
        return "\n".join(lines)
    except (OSError, CheckFailed) as error:
        return f"(could not read the page: {error})"


@contextlib.contextmanager
def browser(timeout):
    """A WebDriver session with a headless Chromium, stopped on exit."""
    chromedriver_path = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
    chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    port = free_port()
    try:
        chromedriver = subprocess.Popen([chromedriver_path, f"--port={port}"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except OSError as error:
        raise CannotRun(f"cannot start {chromedriver_path}: {error}") from None
    driver = WebDriver(port, timeout)
    try:
        try:
            wait_for("chromedriver to be ready", timeout, lambda: True if ready(driver) else None)
            driver.start(chromium)
        except CheckFailed as error:
            raise CannotRun(f"cannot start the browser: {error}") from None
        yield driver
    finally:
        driver.quit()
        chromedriver.terminate()
        try:
            chromedriver.wait(timeout=10)
        except subprocess.TimeoutExpired:
            chromedriver.kill()
            chromedriver.wait()

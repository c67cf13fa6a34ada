"""The chat page in a real headless browser (Debian's chromium, tests/browser.py) against real servers: the
session's open one, and a keyed one of this module's with one engine slot and one waiting place (so a 429 can be
made on purpose) and a corpus with a hostile document (markup in every field, a javascript: link)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from tests.api.test_health import metric_samples
from tests.browser import chromium, severe_console_errors
from tests.conftest import ROOT, ManagedServer, ServerProcess, managed_server, start_server, wait_ready

pytestmark = pytest.mark.slow

KEY = "sk-browser-test-key"
SCREENSHOT = ROOT / "docs" / "chat-page.png"
HOSTILE = {
    "id": "hostile-lighthouse",
    "type": "post",
    "author_full_name": 'Mallory <img src=x onerror="window.__pwned=1">',
    "platform": "<b>blog</b>",
    "link": "javascript:window.__pwned=1",
    "content": "Lighthouse keepers and quantized embeddings: why every lighthouse keeper should quantize vectors. "
    '<script>window.__pwned=1</script> <img src=x onerror="window.__pwned=1"> '
    "A lighthouse keeper stores embeddings in int8 to save memory on the lighthouse.",
}
HOSTILE_QUESTION = "Why should a lighthouse keeper quantize embeddings?"


# ---- the browser and the page's controls, by the names a screen reader uses


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    with chromium() as driver:
        yield driver


def until(driver: WebDriver, check: Callable[[WebDriver], object], timeout_s: float = 120, what: str = "") -> object:
    # The page re-renders its log when an answer ends, so an element one poll found can be gone by the next
    # call on it: that poll says "not yet" and the next one looks again.
    wait = WebDriverWait(driver, timeout_s, poll_frequency=0.05, ignored_exceptions=(StaleElementReferenceException,))
    return wait.until(check, what)


def open_page(driver: WebDriver, base_url: str, key: str | None = None) -> None:
    """A fresh page with empty storage (history, settings, key), the key for the tab when one is given."""
    driver.get(f"{base_url}/ui/icon.svg")  # same origin, so the storage below is the page's
    driver.execute_script("localStorage.clear(); sessionStorage.clear();")
    if key:
        driver.execute_script("sessionStorage.setItem('monolith.apiKey', arguments[0]);", key)
    driver.get_log("browser")  # what came before this page is not its error
    driver.get(f"{base_url}/")


def message_box(driver: WebDriver) -> WebElement:
    return driver.find_element(By.CSS_SELECTOR, 'textarea[aria-label="Message"]')


def send_button(driver: WebDriver) -> WebElement:
    return driver.find_element(By.XPATH, "//form[@id='composer']//button")


def status(driver: WebDriver) -> str:
    return driver.find_element(By.ID, "status").text


def page_ready(driver: WebDriver) -> None:
    until(driver, lambda d: status(d) == "Ready" and send_button(d).is_enabled(), 300, "the page to say Ready")


def articles(driver: WebDriver, author: str) -> list[WebElement]:
    return driver.find_elements(By.CSS_SELECTOR, f'[role="log"] article[data-author="{author}"]')


def open_settings(driver: WebDriver) -> None:
    if not driver.find_element(By.ID, "settings").get_attribute("open"):
        driver.find_element(By.CSS_SELECTOR, "#settings summary").click()


def set_field(driver: WebDriver, element_id: str, value: str) -> None:
    open_settings(driver)
    field = driver.find_element(By.ID, element_id)
    field.clear()
    field.send_keys(value)
    field.send_keys(Keys.TAB)  # change event: the settings are saved


def ask(driver: WebDriver, question: str) -> None:
    box = message_box(driver)
    box.send_keys(question)
    box.send_keys(Keys.ENTER)


def finished_answer(driver: WebDriver, count: int = 1, timeout_s: float = 180) -> WebElement:
    def done(d: WebDriver) -> WebElement | bool:
        found = articles(d, "assistant")
        if len(found) < count or found[-1].get_attribute("aria-busy") == "true":
            return False
        return found[-1] if send_button(d).text == "Send" else False

    return until(driver, done, timeout_s, "the answer to finish")  # type: ignore[return-value]


def gauge(base_url: str, name: str, key: str | None = None) -> float:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return metric_samples(httpx.get(f"{base_url}/metrics", headers=headers).text)[name][0].value


# ---- the session's open server


def test_a_question_is_answered_with_streamed_text(browser: WebDriver, server: ServerProcess) -> None:
    open_page(browser, server.base_url)
    page_ready(browser)
    load = browser.execute_script(
        "const n = performance.getEntriesByType('navigation')[0]; return [n.domContentLoadedEventEnd, n.loadEventEnd];"
    )
    print(f"first load in the headless browser: DOMContentLoaded {load[0]:.0f} ms, load {load[1]:.0f} ms")
    set_field(browser, "max-tokens", "96")
    ask(browser, "Tell me about deploying language models.")

    seen: list[str] = []  # the answer's text while the article says it is busy, and the button says Stop

    def streaming_done(d: WebDriver) -> bool:
        # One look at the page (separate WebDriver calls could straddle the answer's end).
        busy, button, text = d.execute_script(
            "const a = [...document.querySelectorAll('[role=log] article[data-author=assistant]')].pop();"
            "return [a?.getAttribute('aria-busy'), document.getElementById('send').textContent,"
            " a?.querySelector('.text').textContent];"
        )
        if busy == "true":
            assert button == "Stop"
            if text and (not seen or text != seen[-1]):
                seen.append(text)
            return False
        return text is not None and button == "Send"

    until(browser, streaming_done, 180, "the streamed answer")
    answer = articles(browser, "assistant")[-1]
    final = answer.find_element(By.CLASS_NAME, "text").text
    assert len(seen) >= 3, f"the text did not arrive in pieces: {seen}"
    assert all(final.startswith(partial) for partial in seen)  # every partial was a prefix of the answer
    assert [a.text for a in articles(browser, "user")] == ["Tell me about deploying language models."]
    meta = answer.find_element(By.CLASS_NAME, "meta").text
    assert "completion tokens" in meta and "tokens/s" in meta, meta
    assert severe_console_errors(browser) == []


def test_use_sources_shows_a_link_per_source(browser: WebDriver, server: ServerProcess) -> None:
    corpus = [json.loads(line) for line in (ROOT / "corpus" / "sample.jsonl").read_text().splitlines()]
    open_page(browser, server.base_url)
    page_ready(browser)
    browser.find_element(By.XPATH, "//label[normalize-space()='Use sources']/input").click()
    set_field(browser, "temperature", "0")  # the docs' screenshot stays the same from run to run
    set_field(browser, "max-tokens", "80")
    ask(browser, "How do you deploy an LLM to production?")
    answer = finished_answer(browser)
    sources = answer.find_element(By.CSS_SELECTOR, 'ol[aria-label="Sources"]')
    items = sources.find_elements(By.TAG_NAME, "li")
    links = [item.find_element(By.TAG_NAME, "a").get_attribute("href") for item in items]
    assert items and len(links) == len(items)
    assert set(links) <= {doc["link"] for doc in corpus}
    browser.find_element(By.CSS_SELECTOR, "#settings summary").click()  # closed again, for the docs' picture
    SCREENSHOT.parent.mkdir(exist_ok=True)
    browser.save_screenshot(str(SCREENSHOT))
    # A snippet opens on demand and shows the source's own text.
    items[0].find_element(By.TAG_NAME, "summary").click()
    snippet = items[0].find_element(By.CSS_SELECTOR, "details p").text
    assert snippet and any(snippet[:40] in doc["content"] for doc in corpus)
    assert answer.find_element(By.CLASS_NAME, "text").text
    assert severe_console_errors(browser) == []


def test_stop_halts_the_text_and_the_engine_request(browser: WebDriver, server: ServerProcess) -> None:
    open_page(browser, server.base_url)
    page_ready(browser)
    set_field(browser, "max-tokens", "1000")  # a minute of text on this machine, were it not stopped
    ask(browser, "Write a very long story about a lighthouse.")
    until(browser, lambda d: len(articles(d, "assistant")[-1].text) > 40, 120, "some text")
    assert gauge(server.base_url, "monolith_requests_running") == 1
    send_button(browser).click()  # it reads Stop now
    answer = finished_answer(browser, timeout_s=10)
    text = answer.find_element(By.CLASS_NAME, "text").text
    assert "stopped" in answer.find_element(By.CLASS_NAME, "meta").text
    deadline = time.monotonic() + 15
    while gauge(server.base_url, "monolith_requests_running") != 0:
        assert time.monotonic() < deadline, "the engine request outlived the browser's Stop"
        time.sleep(0.2)
    time.sleep(1)
    assert answer.find_element(By.CLASS_NAME, "text").text == text  # nothing arrives after Stop
    assert gauge(server.base_url, "monolith_queue_depth") == 0


def test_keyboard_history_and_settings(browser: WebDriver, server: ServerProcess) -> None:
    open_page(browser, server.base_url)
    page_ready(browser)
    set_field(browser, "max-tokens", "8")
    box = message_box(browser)
    box.send_keys("first line")
    box.send_keys(Keys.SHIFT, Keys.ENTER)  # a newline, not a send
    box.send_keys("second line")
    assert articles(browser, "user") == []
    # Enter that confirms an IME composition (isComposing, keyCode 229) must not send.
    browser.execute_script(
        "arguments[0].dispatchEvent(new KeyboardEvent('keydown', {key: 'Enter', keyCode: 229, isComposing: true,"
        " bubbles: true, cancelable: true}));",
        box,
    )
    time.sleep(0.3)
    assert articles(browser, "user") == []
    box.send_keys(Keys.ENTER)
    finished_answer(browser)
    assert articles(browser, "user")[0].text == "first line\nsecond line"
    assert box.get_attribute("value") == ""

    # New chat, then a reload: both conversations are still there, from localStorage.
    browser.find_element(By.XPATH, "//button[normalize-space()='New chat']").click()
    assert articles(browser, "user") == []
    ask(browser, "A second conversation.")
    finished_answer(browser)
    browser.refresh()
    page_ready(browser)
    history = browser.find_elements(By.CSS_SELECTOR, "#history button")  # the newest first, by first message
    assert [b.get_attribute("title") for b in history] == ["A second conversation.", "first line\nsecond line"]
    history[1].click()
    assert articles(browser, "user")[0].text == "first line\nsecond line"
    assert browser.find_element(By.ID, "max-tokens").get_attribute("value") == "8"  # settings survive the reload
    open_settings(browser)
    browser.find_element(By.XPATH, "//button[normalize-space()='Reset']").click()
    assert browser.find_element(By.ID, "max-tokens").get_attribute("value") == ""
    assert severe_console_errors(browser) == []


# ---- a keyed server with one engine slot and one waiting place


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> Iterator[ManagedServer]:
    folder = tmp_path_factory.mktemp("web")
    corpus = folder / "corpus.jsonl"
    corpus.write_text((ROOT / "corpus" / "sample.jsonl").read_text().rstrip("\n") + "\n" + json.dumps(HOSTILE) + "\n")
    env = {
        "MONOLITH_SERVER__API_KEYS": json.dumps([KEY]),
        "MONOLITH_ENGINE__MAX_NUM_SEQS": "1",
        "MONOLITH_ADMISSION__MAX_WAITING": "1",
        "MONOLITH_INGEST__SAMPLE_CORPUS": str(corpus),
        "MONOLITH_RAG__EXPAND": "false",
        "MONOLITH_RAG__SELF_QUERY": "false",
    }
    with managed_server(folder / "data", model_dir, env) as managed:
        yield managed


def test_loading_state_until_ready(browser: WebDriver, keyed_server: ManagedServer) -> None:
    """First in this part: it starts the keyed server itself and opens the page while the engine loads."""
    keyed_server.stop()
    server = keyed_server.server = start_server(keyed_server.data_dir, keyed_server.model_dir, keyed_server.env)
    until(browser, lambda d: _answers(server.base_url), 120, "the server's port")
    open_page(browser, server.base_url, KEY)
    until(browser, lambda d: status(d).startswith("Loading the twin"), 30, "the loading state")
    assert httpx.get(f"{server.base_url}/health/ready").status_code == 503
    assert not send_button(browser).is_enabled()
    page_ready(browser)  # the page polled readiness, then read the models with the key
    assert browser.find_element(By.ID, "model-name").text == "· twin"
    wait_ready(server)


def _answers(base_url: str) -> bool:
    try:
        return httpx.get(f"{base_url}/health/live", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def test_a_keyed_server_asks_for_the_key_and_then_answers(browser: WebDriver, keyed_server: ManagedServer) -> None:
    server = keyed_server.up()
    open_page(browser, server.base_url)
    key_field = until(browser, lambda d: _visible(d, "input#api-key"), 60, "the API key field")
    assert browser.find_element(By.CSS_SELECTOR, "label[for='api-key']").text == "API key"
    set_field(browser, "max-tokens", "16")
    ask(browser, "Hello there")
    time.sleep(0.5)
    assert articles(browser, "user") == [] and message_box(browser).get_attribute("value") == "Hello there"
    key_field.send_keys("sk-wrong")  # type: ignore[union-attr]
    key_field.send_keys(Keys.ENTER)  # type: ignore[union-attr]
    until(browser, lambda d: "refused" in d.find_element(By.ID, "notice").text, 30, "the refusal")
    key_field.send_keys(KEY)  # type: ignore[union-attr]
    key_field.send_keys(Keys.ENTER)  # type: ignore[union-attr]
    answer = finished_answer(browser)  # the question waiting for the key goes out with it
    assert answer.find_element(By.CLASS_NAME, "text").text
    assert [a.text for a in articles(browser, "user")] == ["Hello there"]
    assert not _visible(browser, "input#api-key")
    # For this tab only: nothing in localStorage unless "remember" was ticked.
    assert browser.execute_script("return sessionStorage.getItem('monolith.apiKey')") == KEY
    assert browser.execute_script("return localStorage.getItem('monolith.apiKey')") is None
    assert KEY not in browser.execute_script("return JSON.stringify(localStorage)")


def _visible(driver: WebDriver, selector: str) -> WebElement | bool:
    found = driver.find_elements(By.CSS_SELECTOR, selector)
    return found[0] if found and found[0].is_displayed() else False


def test_a_429_shows_how_long_to_wait(browser: WebDriver, keyed_server: ManagedServer) -> None:
    server = keyed_server.up()
    open_page(browser, server.base_url, KEY)
    page_ready(browser)
    stop = threading.Event()
    body = {"model": "twin", "prompt": "Count to a thousand.", "max_tokens": 1000, "ignore_eos": True, "stream": True}

    def occupy() -> None:  # the engine's one slot, then the one waiting place
        headers = {"Authorization": f"Bearer {KEY}"}
        with httpx.stream("POST", f"{server.base_url}/v1/completions", json=body, headers=headers, timeout=120) as r:
            for _ in r.iter_bytes():
                if stop.is_set():
                    return

    workers = [threading.Thread(target=occupy, daemon=True) for _ in range(2)]
    try:
        for worker in workers:
            worker.start()
            time.sleep(0.5)
        until(browser, lambda d: gauge(server.base_url, "monolith_queue_depth") == 1, 60, "a full queue")
        ask(browser, "Are you there?")
        notice = until(browser, lambda d: _visible(d, "#notice"), 30, "the 429 notice")
        text = notice.text  # type: ignore[union-attr]
        assert "busy" in text and "Try again in" in text, text
        seconds = int(text.split("Try again in ")[1].split(" s")[0])
        assert seconds >= 1
        assert message_box(browser).get_attribute("value") == "Are you there?"  # nothing lost
        assert articles(browser, "user") == []
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=30)


def test_markup_from_a_source_never_runs(browser: WebDriver, keyed_server: ManagedServer) -> None:
    server = keyed_server.up()
    open_page(browser, server.base_url, KEY)
    page_ready(browser)
    browser.find_element(By.XPATH, "//label[normalize-space()='Use sources']/input").click()
    set_field(browser, "max-tokens", "32")
    ask(browser, HOSTILE_QUESTION)
    answer = finished_answer(browser)
    sources = answer.find_element(By.CSS_SELECTOR, 'ol[aria-label="Sources"]')
    hostile = [li for li in sources.find_elements(By.TAG_NAME, "li") if "Mallory" in li.text]
    assert hostile, sources.text
    item = hostile[0]
    assert HOSTILE["author_full_name"] in item.text and HOSTILE["platform"] in item.text  # shown as text
    item.find_element(By.TAG_NAME, "summary").click()
    assert "<script>window.__pwned=1</script>" in item.find_element(By.CSS_SELECTOR, "details p").text
    assert item.find_elements(By.TAG_NAME, "a") == []  # a javascript: link is no link
    assert browser.find_elements(By.CSS_SELECTOR, '[role="log"] img, [role="log"] script, [role="log"] b') == []
    assert browser.execute_script("return window.__pwned") is None

    # The CSP is obeyed as well as sent: markup that did reach the DOM could still not run a script.
    browser.get_log("browser")
    browser.execute_script(
        "const s = document.createElement('script'); s.textContent = 'window.__inline = 1'; document.body.append(s);"
        "document.body.insertAdjacentHTML('beforeend', '<img src=x onerror=\"window.__inline = 2\">');"
    )
    time.sleep(0.5)
    assert browser.execute_script("return window.__inline") is None
    refused = [m for m in severe_console_errors(browser) if "Content Security Policy" in m]
    assert refused, "the browser did not report the refused inline script"

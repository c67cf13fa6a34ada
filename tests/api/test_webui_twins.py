"""The chat page's twin picker in a real headless browser (Debian's chromium), against the real app on a scripted
engine (the twins' adapters are the real engine's business: tests/api/test_twins.py): the picker lists the base
and each twin from /v1/models, and the chosen twin is the model the page's requests name."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select

from monolith.bench.peers import free_port
from monolith.config import Settings, TwinSettings
from tests.api.test_health import metric_samples
from tests.api.test_webui_browser import ask, browser, finished_answer, open_page, page_ready  # noqa: F401
from tests.scripted import ScriptedEngine, ThreadedServer


@pytest.fixture
def twins_page(settings: Settings) -> Iterator[str]:
    twins = {name: TwinSettings(adapter=f"adapters/{name}", author=name.title()) for name in ("ada", "jonas")}
    with ThreadedServer(settings.model_copy(update={"twins": twins}), ScriptedEngine(gap_s=0.01), free_port()) as srv:
        yield srv.base_url


def generations(base_url: str, model: str) -> float:
    import httpx

    samples = metric_samples(httpx.get(f"{base_url}/metrics").text).get("monolith_model_generations_total", [])
    return sum(s.value for s in samples if s.labels.get("model") == model)


def test_the_page_lists_the_twins_and_asks_the_one_chosen(browser: WebDriver, twins_page: str) -> None:  # noqa: F811
    open_page(browser, twins_page)
    page_ready(browser)
    picker = browser.find_element(By.ID, "twin-picker")
    assert picker.is_displayed()
    select = Select(browser.find_element(By.CSS_SELECTOR, 'select[aria-label="Twin"]'))
    assert [o.text for o in select.options] == ["twin (base)", "ada", "jonas"]  # no "-rag" alias, no embedder
    select.select_by_visible_text("jonas")
    assert browser.find_element(By.ID, "model-name").text == "· jonas"
    before = {model: generations(twins_page, model) for model in ("jonas", "twin")}  # the process's registry
    ask(browser, "Hello there")
    finished_answer(browser)
    assert generations(twins_page, "jonas") == before["jonas"] + 1 and generations(twins_page, "twin") == before["twin"]

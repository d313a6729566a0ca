"""The web console in a real browser: Debian's Chromium driven by Selenium over ChromeDriver,
with Chrome's virtual authenticator (CTAP2, resident key, user verification) standing in for the
user's passkey — sign up, buy and see the fill arrive live, cancel a resting order, see the
equity chart drawn, log out, log back in. Screenshots go to docs/img/ for the README.

Skipped, saying why, where Chromium or ChromeDriver is not installed
(`apt-get install chromium chromium-driver`; `.ci/run` installs them).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import RunningSystem, running_system

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
IMG = Path(__file__).resolve().parents[2] / "docs" / "img"

if CHROMIUM is None or CHROMEDRIVER is None:
    pytest.skip(
        "no Chromium/ChromeDriver here (apt-get install chromium chromium-driver)",
        allow_module_level=True,
    )

selenium = pytest.importorskip("selenium", reason="selenium is a dev dependency")

from selenium import webdriver  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.virtual_authenticator import (  # noqa: E402
    Protocol,
    Transport,
    VirtualAuthenticatorOptions,
)
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402


@pytest.fixture(scope="module")
def system() -> Iterator[RunningSystem]:
    with running_system("--speed", "1") as s:
        yield s


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1280,2200",
        "--disable-gpu",
    ):
        opts.add_argument(arg)
    driver = webdriver.Chrome(options=opts, service=webdriver.ChromeService(str(CHROMEDRIVER)))
    driver.add_virtual_authenticator(
        VirtualAuthenticatorOptions(
            protocol=Protocol.CTAP2,
            transport=Transport.INTERNAL,
            has_resident_key=True,
            has_user_verification=True,
            is_user_verified=True,
        )
    )
    try:
        yield driver
    finally:
        driver.quit()


def wait(driver: Any, what: Any, timeout: float = 30) -> Any:
    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(what)


def text_in(element_id: str, text: str) -> Any:
    return ec.text_to_be_present_in_element((By.ID, element_id), text)


def click(driver: Any, by: str, selector: str) -> None:
    """Click what the selector finds, again if a live refresh re-rendered it meanwhile."""
    from selenium.common.exceptions import StaleElementReferenceException

    def attempt(d: Any) -> bool:
        try:
            d.find_element(by, selector).click()
            return True
        except StaleElementReferenceException:
            return False

    wait(driver, attempt)


def shot(driver: Any, name: str) -> None:
    IMG.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(IMG / name))


def test_a_person_trades_in_the_browser_with_a_passkey(system: RunningSystem, browser: Any) -> None:
    d = browser
    # WebAuthn needs a secure context: localhost is one (the RP ID is localhost)
    d.get(f"http://localhost:{system.gateway_port}/")
    wait(d, ec.visibility_of_element_located((By.ID, "email"))).send_keys("browser@example.com")
    shot(d, "console-signin.png")
    d.find_element(By.ID, "signup").click()
    wait(d, text_in("account", "$100,000.00"))  # signed up with the virtual authenticator
    assert "browser@example.com" in d.find_element(By.ID, "who").text

    # a market buy: its fill appears live (the page is not reloaded)
    d.find_element(By.ID, "t-symbol").clear()
    d.find_element(By.ID, "t-symbol").send_keys("IBM")
    d.find_element(By.ID, "t-qty").clear()
    d.find_element(By.ID, "t-qty").send_keys("3")
    d.find_element(By.CSS_SELECTOR, "#ticket button[type=submit]").click()
    wait(d, text_in("fills", "IBM"), timeout=60)
    fills = d.find_element(By.ID, "fills").text
    assert " ET" in fills and "ask" in fills  # market time, and the why sentence
    wait(d, text_in("positions", "IBM"))

    # a resting limit order shows in open orders; cancel it from the page
    Select(d.find_element(By.ID, "t-type")).select_by_visible_text("limit")
    d.find_element(By.ID, "t-limit").send_keys("1.00")
    Select(d.find_element(By.ID, "t-tif")).select_by_visible_text("gtc")
    d.find_element(By.ID, "t-qty").clear()
    d.find_element(By.ID, "t-qty").send_keys("1")
    d.find_element(By.CSS_SELECTOR, "#ticket button[type=submit]").click()
    wait(d, text_in("orders", "1.00"))
    click(d, By.XPATH, "//table[@id='orders']//button[text()='Cancel']")
    wait(d, text_in("orders", "none"))

    # bad input: a clear message next to the ticket, not a crash
    d.find_element(By.ID, "t-qty").clear()
    d.find_element(By.ID, "t-qty").send_keys("0")
    d.find_element(By.CSS_SELECTOR, "#ticket button[type=submit]").click()
    wait(d, text_in("ticket-error", "qty"))

    # the charts are drawn (uPlot renders a canvas), not tabulated
    wait(d, ec.presence_of_element_located((By.CSS_SELECTOR, "#quote-chart canvas")))
    Select(d.find_element(By.ID, "eq-frame")).select_by_value("1Min")
    wait(d, ec.presence_of_element_located((By.CSS_SELECTOR, "#equity-chart canvas")))
    shot(d, "console.png")

    # an API key needs a passkey step-up (the virtual authenticator signs it); shown once
    d.find_element(By.ID, "key-name").send_keys("bot")
    click(d, By.CSS_SELECTOR, "#key-form button[type=submit]")
    wait(d, text_in("key-secret", "APCA-API-SECRET-KEY"))
    wait(d, text_in("keys", "bot"))
    click(d, By.XPATH, "//table[@id='keys']//button[text()='Revoke']")
    wait(d, text_in("keys", "revoked"))
    assert "this one" in d.find_element(By.ID, "sessions").text
    assert "Pro+" in d.find_element(By.ID, "handoff").text  # the handoff status, and why not

    d.find_element(By.ID, "logout").click()
    wait(d, ec.visibility_of_element_located((By.ID, "signed-out")))
    # and back in with the same passkey
    email = d.find_element(By.ID, "email")
    email.clear()
    email.send_keys("browser@example.com")
    d.find_element(By.ID, "login").click()
    wait(d, text_in("positions", "IBM"))


def test_connecting_alpaca_from_the_browser(browser: Any, tmp_path: Path) -> None:
    """OAuth in the browser against the sandbox broker: the session cookie is SameSite=Strict,
    so the broker's redirect lands on the console's page, which completes it same-site."""
    from tests.e2e.helpers import run_admin

    with running_system("--speed", "1", "--live-sandbox") as live:
        d = browser
        d.delete_all_cookies()
        d.get(f"http://localhost:{live.gateway_port}/")
        wait(d, ec.visibility_of_element_located((By.ID, "email"))).send_keys("live@example.com")
        d.find_element(By.ID, "signup").click()
        wait(d, text_in("account", "$100,000.00"))
        run_admin(live.data_dir, "tier", "set", "live@example.com", "pro_plus", "--reason", "e2e")
        run_admin(live.data_dir, "graduate", "live@example.com", "--reason", "e2e")
        d.refresh()
        click(d, By.XPATH, "//p[@id='handoff']//button[starts-with(text(), 'Connect Alpaca')]")
        wait(d, ec.element_to_be_clickable((By.XPATH, "//button[text()='Approve']"))).click()
        wait(d, text_in("result", "Connected: Alpaca account"))
        assert "code=" not in d.current_url  # the code does not stay in the address bar
        shot(d, "console-handoff-connected.png")
        d.get(f"http://localhost:{live.gateway_port}/")
        wait(d, text_in("handoff", "connected to Alpaca"))

        # a live order: reviewed exactly as it will be sent, then signed with the passkey
        wait(d, ec.visibility_of_element_located((By.ID, "l-qty")))
        d.find_element(By.ID, "l-qty").clear()
        d.find_element(By.ID, "l-qty").send_keys("2")
        click(d, By.CSS_SELECTOR, "#live-form button[type=submit]")
        wait(d, text_in("live-payload", '"qty":"2"'))
        assert "LIVE ORDER" in d.find_element(By.ID, "live-summary").text
        click(d, By.ID, "live-sign")
        wait(d, text_in("live-result", "live order"))
        wait(d, text_in("live-orders", "filled"), timeout=30)

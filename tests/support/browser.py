"""Headless Chromium (Selenium 4) for the apps' end-to-end tests, and screenshots for the docs.

``chromium(profile_dir)`` starts Debian's chromium through chromedriver with flags that keep it off the
network; ``screenshot(driver, name, for_docs=True)`` saves to ``test-artifacts/`` and, with
``PW_UPDATE_DOC_SCREENSHOTS=1``, to ``docs/_static/screenshots/`` too; ``browser_login(driver, hub,
user)`` logs a user in to a test hub, ``submit_spawn_form(driver)`` presses the spawn form's Start.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from support.hub import REPO

CHROMIUM = os.environ.get("PW_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("PW_CHROMEDRIVER", "/usr/bin/chromedriver")
ARTIFACTS = REPO / "test-artifacts"
DOC_SCREENSHOTS = REPO / "docs" / "_static" / "screenshots"

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
except ImportError as exc:  # reported through browser_available(): a skip here, a failure in CI
    webdriver = None
    _SELENIUM_MISSING = str(exc)


def browser_available() -> tuple[bool, str]:
    if webdriver is None:
        return False, f"selenium is not importable: {_SELENIUM_MISSING}"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            return False, f"{path} is missing (Debian: chromium, chromium-driver; .ci/install-system.sh)"
    return True, ""


def chromium(profile_dir: Path, window: str = "1280,900") -> Any:
    options = Options()
    options.binary_location = CHROMIUM
    # Without the background-networking flags Chromium reaches for the outside network.
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", f"--window-size={window}",
                 f"--user-data-dir={profile_dir}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    return driver


def screenshot(driver: Any, name: str, for_docs: bool = False) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    driver.save_screenshot(str(path))
    if for_docs and os.environ.get("PW_UPDATE_DOC_SCREENSHOTS") == "1":
        DOC_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOC_SCREENSHOTS / name)
    return path


def browser_login(driver: Any, hub: Any, user: str, *, next_path: str = "",
                  forget_apps: bool = False) -> None:
    """Log ``user`` in to ``hub`` (the demo's dummy authenticator takes any password), ending the
    hub session of whoever was logged in. Cookies of other paths (the apps' own logins) stay, as
    in real use, unless ``forget_apps``; ``next_path`` is where the hub goes after the login."""
    from urllib.parse import quote

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    if forget_apps:
        # Every cookie, those of the servers' paths too (/user/alice/), which delete_all_cookies()
        # leaves when the page is elsewhere.
        driver.execute_cdp_cmd("Network.clearBrowserCookies", {})
    else:
        driver.get(f"{hub.url}/hub/logout")
    driver.get(f"{hub.url}/hub/login" + (f"?next={quote(next_path, safe='')}" if next_path else ""))
    driver.find_element(By.ID, "username_input").send_keys(user)
    driver.find_element(By.ID, "password_input").send_keys("any password")
    driver.find_element(By.ID, "login_submit").click()
    WebDriverWait(driver, 30).until(lambda d: "/hub/login" not in d.current_url)


def submit_spawn_form(driver: Any) -> None:
    """Press the spawn form's Start: scrolled to at once (a smooth scroll may still be moving when
    the click lands) and clicked once nothing covers its middle (the page may still lay out)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    button = driver.find_element(By.CSS_SELECTOR, "#spawn_form button[type=submit]")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center', behavior: 'instant'});", button)
    WebDriverWait(driver, 10).until(lambda d: d.execute_script(
        "const r = arguments[0].getBoundingClientRect();"
        "const e = document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2);"
        "return e === arguments[0] || arguments[0].contains(e);", button))
    button.click()

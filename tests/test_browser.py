"""The spawn page in a real browser: headless Chromium (Selenium 4) against the demo hub.

A user logs in, sees the profile form, types a bad environment line and gets the form back with
the error and what was typed, fixes it, starts a server, watches the progress page, lands in
JupyterLab and stops the server from the hub's home page. Screenshots go to ``test-artifacts/``;
with ``PW_UPDATE_DOC_SCREENSHOTS=1`` the form and JupyterLab ones are also copied to
``docs/_static/screenshots/``.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from support.browser import ARTIFACTS, browser_available, chromium, screenshot, submit_spawn_form
from support.hub import HubProcess, group_members, hub_available, running_hub, timing
from support.requirements import require

pytestmark = pytest.mark.browser

USER = "browser-user"

try:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select, WebDriverWait
except ImportError:  # reported by browser_available(): a skip here, a failure in CI
    pass


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory):
    for what, (ok, why) in (("hub", hub_available()), ("browser", browser_available())):
        require(what, ok, why)
    with running_hub(tmp_path_factory.mktemp("browser-hub")) as hub:
        yield hub


@pytest.fixture(scope="module")
def driver(hub: HubProcess, tmp_path_factory: pytest.TempPathFactory):
    driver = chromium(tmp_path_factory.mktemp("chromium-profile"), window="1280,1100")
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def on_failure_keep_page(request: pytest.FixtureRequest, driver):
    """Saves a screenshot and the HTML of the page a failing test stopped on."""
    failed_before = request.session.testsfailed
    yield
    # The call's report is counted before teardown starts.
    if request.session.testsfailed > failed_before:
        ARTIFACTS.mkdir(exist_ok=True)
        name = f"failure-{request.node.name}"
        try:
            driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))
            (ARTIFACTS / f"{name}.html").write_text(driver.page_source)
        except Exception as exc:
            print(f"could not save the failing page: {exc}")


def wait(driver, timeout: float = 30):
    return WebDriverWait(driver, timeout, poll_frequency=0.2)


def login(driver, hub: HubProcess) -> None:
    driver.get(f"{hub.url}/hub/login")
    if "/hub/login" not in driver.current_url:
        return  # the cookie from an earlier test still holds
    driver.find_element(By.ID, "username_input").send_keys(USER)
    driver.find_element(By.ID, "password_input").send_keys("any password")
    driver.find_element(By.ID, "login_submit").click()
    wait(driver).until(lambda d: "/hub/login" not in d.current_url)


def open_spawn_form(driver, hub: HubProcess) -> None:
    login(driver, hub)
    driver.get(f"{hub.url}/hub/spawn")
    wait(driver).until(ec.presence_of_element_located((By.ID, "pw-profile")))


def set_text(element, text: str) -> None:
    element.clear()
    element.send_keys(text)


@pytest.mark.usefixtures("on_failure_keep_page")
def test_spawn_form_shows_profiles(driver, hub: HubProcess) -> None:
    open_spawn_form(driver, hub)
    profiles = Select(driver.find_element(By.ID, "pw-profile"))
    assert [o.get_attribute("value") for o in profiles.options] == ["demo-small", "demo-large"]
    assert profiles.first_selected_option.get_attribute("value") == "demo-small"
    assert driver.find_element(By.ID, "pw-hours--demo-small").is_displayed()
    assert driver.find_element(By.ID, "pw-env").is_displayed()
    screenshot(driver, "spawn-form.png", for_docs=True)


@pytest.mark.usefixtures("on_failure_keep_page")
def test_bad_env_line_comes_back_with_error_and_typed_text(driver, hub: HubProcess) -> None:
    open_spawn_form(driver, hub)
    set_text(driver.find_element(By.ID, "pw-env"), "NOT A PAIR")
    submit_spawn_form(driver)
    error = wait(driver).until(ec.visibility_of_element_located((By.CSS_SELECTOR, ".spawn-error-msg")))
    assert "env: line 1: expected NAME=value" in error.text, error.text
    assert driver.find_element(By.ID, "pw-env").get_attribute("value") == "NOT A PAIR"
    assert hub.server_model(USER) is None
    screenshot(driver, "spawn-form-error.png")


@pytest.mark.usefixtures("on_failure_keep_page")
def test_spawn_to_jupyterlab_and_stop(driver, hub: HubProcess) -> None:
    open_spawn_form(driver, hub)
    set_text(driver.find_element(By.ID, "pw-env"), "GREETING=hello")
    Select(driver.find_element(By.ID, "pw-profile")).select_by_value("demo-small")
    set_text(driver.find_element(By.ID, "pw-hours--demo-small"), "2")
    started = time.monotonic()
    submit_spawn_form(driver)

    wait(driver).until(lambda d: "/spawn-pending/" in d.current_url or "/user/" in d.current_url)
    if "/spawn-pending/" in driver.current_url:
        # The progress bar moves within a second or two of the page; catch it moving.
        try:
            wait(driver, 10).until(lambda d: d.find_element(By.ID, "progress-message").text.strip())
        except TimeoutException:
            pass
        screenshot(driver, "spawn-pending.png")
    else:
        print("the server was ready before the spawn-pending page showed: no spawn-pending.png")

    def in_lab(d) -> bool:
        return "/user/" in d.current_url and (
            bool(d.find_elements(By.CSS_SELECTOR, ".jp-LabShell, #main"))
            or "JupyterLab" in d.execute_script("return document.title"))

    wait(driver, 120).until(in_lab)
    timing("browser spawn-to-JupyterLab", time.monotonic() - started)
    assert driver.current_url.startswith(f"{hub.url}/user/{USER}/lab"), driver.current_url
    try:  # for the screenshot: the launcher is the last thing JupyterLab draws
        wait(driver, 60).until(ec.visibility_of_element_located((By.CSS_SELECTOR, ".jp-Launcher")))
        time.sleep(1)
    except TimeoutException:
        print("JupyterLab's launcher did not show within 60 s; the screenshot shows what there was")
    dismiss_news_toast(driver)
    screenshot(driver, "jupyterlab.png", for_docs=True)

    model = hub.server_model(USER)
    assert model["user_options"]["env"] == {"GREETING": "hello"}
    assert str(model["user_options"]["hours"]) == "2"
    pgid = int((hub.job_dir(USER) / "job.pid").read_text().split()[0])
    environs = [_environ(pid) for pid in group_members(pgid)]
    assert any(env.get("GREETING") == "hello" for env in environs), "GREETING did not reach the job"

    driver.get(f"{hub.url}/hub/home")
    wait(driver).until(ec.element_to_be_clickable((By.ID, "stop"))).click()
    wait(driver, 60).until(lambda d: "Start My Server" in d.find_element(By.ID, "start").text)
    hub.wait_gone(USER, timeout=30)
    deadline = time.monotonic() + 15
    while group_members(pgid):
        assert time.monotonic() < deadline, f"the job's processes outlived Stop: {group_members(pgid)}"
        time.sleep(0.2)


def dismiss_news_toast(driver) -> None:
    """Answers JupyterLab's "notified about official Jupyter news?" toast (No), for a clean screenshot."""
    try:
        wait(driver, 5).until(ec.element_to_be_clickable(
            (By.XPATH, "//*[contains(@class, 'jp-toast') or contains(@class, 'Toastify')]"
                       "//button[normalize-space()='No']"))).click()
        wait(driver, 5).until_not(ec.presence_of_element_located(
            (By.XPATH, "//*[contains(text(), 'official Jupyter news')]")))
    except TimeoutException:
        pass


def _environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)

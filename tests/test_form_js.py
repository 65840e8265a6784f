"""The spawn form's script in a real browser (headless Chromium), without a hub: the form's HTML
as the spawner renders it, loaded from a file. The hub tests cover the rest of the page."""

from __future__ import annotations

import pytest
from support.browser import browser_available, chromium
from support.requirements import require

from pw_spawner.testing.spawners import make_spawner

pytestmark = pytest.mark.browser

PROFILES = [{"slug": "small", "display_name": "Small", "default": True},
            {"slug": "gpu", "display_name": "GPU"},
            {"slug": "viz", "display_name": "Visualisation"}]
RESOURCE = {"host": "login.example.org", "key_file": "/k", "known_hosts": "/kh", "scheduler": "slurm"}


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    ok, why = browser_available()
    require("browser", ok, why)
    driver = chromium(tmp_path_factory.mktemp("chromium-form"))
    try:
        yield driver
    finally:
        driver.quit()


async def test_a_service_host_offers_only_its_job_types(driver, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    spawner = make_spawner(profile_list=PROFILES, resources=[
        {**RESOURCE, "name": "cluster", "profiles": ["small", "gpu"]},
        {**RESOURCE, "name": "vizhost", "scheduler": "controller", "profiles": ["viz"]},
        {**RESOURCE, "name": "anything"}])
    page = tmp_path / "form.html"
    page.write_text(f"<!doctype html><form>{await spawner._options_form_html(spawner)}</form>")
    driver.get(page.as_uri())
    host = Select(driver.find_element(By.ID, "pw-resource"))
    profile = driver.find_element(By.ID, "pw-profile")

    def enabled() -> list[str]:
        return [o.get_attribute("value") for o in Select(profile).options if o.is_enabled()]

    def shown() -> list[str]:
        return [fs.get_attribute("data-profile") for fs in driver.find_elements(By.CSS_SELECTOR, "fieldset")
                if fs.is_displayed()]

    assert enabled() == ["small", "gpu"] and shown() == ["small"]
    host.select_by_value("vizhost")
    # The chosen job type is not offered there: the first one that is takes its place.
    assert enabled() == ["viz"] and profile.get_attribute("value") == "viz" and shown() == ["viz"]
    host.select_by_value("anything")
    assert enabled() == ["small", "gpu", "viz"] and profile.get_attribute("value") == "viz"

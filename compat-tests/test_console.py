"""The web console in a real browser: headless Chromium (Debian's chromium and
chromium-driver) driven by Selenium, against a broker with data. Each page
loads; the group lag table shows the lag `/metrics` reports; the live tail
shows a record produced during the test, and the console produces one.
Screenshots go to compat-tests/artifacts/.
"""

import os
import pathlib
import shutil

import pytest
from confluent_kafka import Consumer, Producer

from conftest import scrape, value
from test_groups import wait_for
from test_http_rest import create_topic, start_gateway

ARTIFACTS = pathlib.Path(__file__).resolve().parent / "artifacts"

# Selenium must never try to download a driver or a browser.
os.environ.setdefault("SE_OFFLINE", "true")


@pytest.fixture
def browser():
    chromium = shutil.which("chromium")
    driver = shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.fail("chromium and chromium-driver are not installed: run compat-tests/run-all.sh")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = chromium
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
              "--window-size=1280,900", "--no-first-run", "--no-default-browser-check",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              "--disable-extensions", "--disable-default-apps"):
        opts.add_argument(a)
    drv = webdriver.Chrome(service=Service(executable_path=driver), options=opts)
    drv.set_page_load_timeout(60)
    ARTIFACTS.mkdir(exist_ok=True)
    yield drv
    drv.quit()


def text_of(drv, css):
    from selenium.webdriver.common.by import By
    els = drv.find_elements(By.CSS_SELECTOR, css)
    return els[0].text if els else None


def wait_text(drv, css, cond, what, timeout=60):
    wait_for(lambda: (t := text_of(drv, css)) is not None and cond(t), what, timeout)


def test_console_pages_lag_and_live_tail(tmp_path, browser):
    b = start_gateway(tmp_path / "data")
    try:
        create_topic(b, "orders", 3)
        p = Producer({"bootstrap.servers": b.bootstrap})
        for i in range(30):
            p.produce("orders", key=b"k%d" % i, value=b"order-%d" % i, partition=i % 3)
        p.flush(30)
        # A group that read and committed part of partition 0: lag on every partition.
        c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "billing",
                      "auto.offset.reset": "earliest", "enable.auto.commit": False})
        from confluent_kafka import TopicPartition
        c.commit(offsets=[TopicPartition("orders", 0, 4), TopicPartition("orders", 1, 0),
                          TopicPartition("orders", 2, 10)], asynchronous=False)
        c.close()

        drv = browser
        drv.get(b.url + "/")  # a browser at the root lands on the console
        wait_text(drv, '[data-testid="overview-topics"]', lambda t: t.strip() == "1", "the overview")
        assert text_of(drv, "#cluster-id")
        drv.save_screenshot(str(ARTIFACTS / "console-overview.png"))

        drv.get(b.url + "/ui/#/topics")
        wait_text(drv, '[data-testid="topic-row-orders"]', lambda t: "orders" in t and "30" in t, "the topics table")
        drv.save_screenshot(str(ARTIFACTS / "console-topics.png"))

        drv.get(b.url + "/ui/#/topics/orders")
        wait_text(drv, '[data-testid="partition-row-2"]', lambda t: "10" in t, "the partitions table")
        wait_text(drv, "#configs-table", lambda t: "cleanup.policy" in t and "retention.ms" in t, "the configs")
        drv.save_screenshot(str(ARTIFACTS / "console-topic.png"))

        drv.get(b.url + "/ui/#/groups")
        wait_text(drv, '[data-testid="group-row-billing"]', lambda t: "billing" in t, "the groups table")

        # The lag chart has a few samples to draw (the sampler runs every 2 s).
        import requests
        wait_for(lambda: len(requests.get(b.url + "/ui/api/groups/billing", timeout=30).json()["history"]) >= 3,
                 "lag history samples", 60)
        # The lag the console shows is the lag /metrics reports.
        samples = scrape(b)
        drv.get(b.url + "/ui/#/groups/billing")
        for part in range(3):
            want = value(samples, "sluice_consumer_group_lag", group="billing", topic="orders", partition=str(part))
            assert want is not None
            wait_text(drv, f'[data-testid="lag-orders-{part}"]', lambda t, w=want: t.strip() == str(int(w)),
                      f"the lag of partition {part}")
        assert [int(value(samples, "sluice_consumer_group_lag", group="billing", topic="orders",
                          partition=str(x))) for x in range(3)] == [6, 10, 0]
        wait_text(drv, "#group-state", lambda t: t.strip() != "", "the group state")
        drv.save_screenshot(str(ARTIFACTS / "console-group.png"))

        # The live tail shows a record produced while it is open.
        from selenium.webdriver.common.by import By
        drv.get(b.url + "/ui/#/tail/orders")
        wait_text(drv, "#tail-status", lambda t: "connected" in t, "the tail to connect")
        p.produce("orders", key=b"live", value=b"hello-from-the-test", partition=1)
        p.flush(30)
        wait_text(drv, "#tail-log", lambda t: "hello-from-the-test" in t, "the produced record in the tail")
        # And a test record produced from the console comes back through it.
        drv.find_element(By.ID, "produce-key").send_keys("console-key")
        drv.find_element(By.ID, "produce-value").send_keys("made-in-the-browser")
        drv.find_element(By.ID, "produce-submit").click()
        wait_text(drv, "#produce-result", lambda t: "offset" in t, "the produce result")
        wait_text(drv, "#tail-log", lambda t: "made-in-the-browser" in t, "the console's record in the tail")
        drv.save_screenshot(str(ARTIFACTS / "console-tail.png"))
    finally:
        b.stop()

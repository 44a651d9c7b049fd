"""Drives the web pages in headless Chromium (Selenium, from PyPI), for
runner/tests/web_browser.rs: sign in through the OpenID provider, run code in
the playground and read the verdict, visit every page, check escaping,
keyboard access, labels, landmarks and that no page logs a CSP violation;
save screenshots; measure the playground. Environment:
  BASE_URL     the service, as browsers reach it (http://localhost:PORT)
  API_KEY      a learner key of the same tenant (the API baseline)
  OUT_DIR      screenshots and figures.json go here
  PHASE        "pages" (default) or "releases"
  IMAGE, ENVIRONMENT  (releases) the pinned image rob asks to promote, and where
Exit status 0 when every check passed; failures say what and where."""

import json
import os
import statistics
import sys
import time
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

BASE = os.environ["BASE_URL"].rstrip("/")
OUT = os.environ["OUT_DIR"]
os.makedirs(OUT, exist_ok=True)
CHECKS = []


def check(ok, what):
    CHECKS.append(what)
    if not ok:
        raise AssertionError(what)


def browser():
    opts = webdriver.ChromeOptions()
    # --no-sandbox: Chromium's own sandbox needs unprivileged user
    # namespaces, which root in a CI container does not get; the browser
    # only ever loads this test's loopback pages.
    opts.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1280,1600", "--no-first-run", "--disable-extensions"]:
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(service=Service(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")), options=opts)
    d.set_page_load_timeout(30)
    return d


def csp_violations(d):
    return [e["message"] for e in d.get_log("browser")
            if "Content Security Policy" in e["message"] or "Refused to" in e["message"]]


def no_csp_violations(d, page):
    v = csp_violations(d)
    check(not v, f"{page}: no CSP violation in the browser log (found {v})")


def wait_ready(d, timeout=30):
    WebDriverWait(d, timeout).until(lambda d: d.execute_script("return document.body && document.body.dataset.ready === 'true'"))


def shot(d, name):
    d.save_screenshot(os.path.join(OUT, f"{name}.png"))


def accessible(d, page):
    """Landmarks, labelled controls, and the skip link as first tab stop."""
    r = d.execute_script("""
      const unlabelled = [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
        .filter((e) => e.labels.length === 0 && !e.getAttribute('aria-label') && !e.getAttribute('aria-labelledby'))
        .map((e) => e.id || e.outerHTML.slice(0, 60));
      return { main: !!document.querySelector('main'), nav: !!document.querySelector('nav[aria-label]'),
               header: !!document.querySelector('header'), h1: document.querySelectorAll('h1').length,
               lang: document.documentElement.lang, unlabelled };""")
    check(r["main"] and r["nav"] and r["header"] and r["h1"] == 1 and r["lang"] == "en",
          f"{page}: landmarks (main, labelled nav, header, one h1, lang) {r}")
    check(not r["unlabelled"], f"{page}: every control has a label {r['unlabelled']}")
    d.refresh()
    wait_ready(d)
    webdriver.ActionChains(d).send_keys(Keys.TAB).perform()
    first = d.execute_script("return document.activeElement.className")
    check(first == "skip", f"{page}: the first tab stop is the skip link (got {first!r})")
    webdriver.ActionChains(d).send_keys(Keys.ENTER).perform()
    WebDriverWait(d, 5).until(lambda d: d.execute_script("return document.activeElement.id") == "main")


def sign_in(d, sub):
    d.get(BASE + "/")
    shot(d, "sign-in")
    no_csp_violations(d, "start page")
    d.find_element(By.LINK_TEXT, "Sign in to alpha").click()
    WebDriverWait(d, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, f'button[name="sub"][value="{sub}"]'))
    d.find_element(By.CSS_SELECTOR, f'button[name="sub"][value="{sub}"]').click()
    WebDriverWait(d, 30).until(lambda d: d.current_url.startswith(BASE + "/play"))
    wait_ready(d)
    d.get_log("browser")  # the provider's own pages are not ours to judge


def sign_out(d):
    if not d.find_elements(By.CSS_SELECTOR, 'form[action="/auth/logout"] button'):
        d.get(BASE + "/play")
    d.find_element(By.CSS_SELECTOR, 'form[action="/auth/logout"] button').click()
    WebDriverWait(d, 10).until(lambda d: d.find_elements(By.LINK_TEXT, "Sign in to alpha"))
    d.get(BASE + "/v1/runs")
    check("unauthenticated" in d.page_source, "after sign-out the API refuses the browser")


HOSTILE = ('print("<script>window.__xss=1</script><img src=x onerror=\\"window.__xss=2\\">")\n'
           'import sys; sys.stderr.write("<b>err</b>\\n")\n')


def click_to_verdict(d):
    """Milliseconds from clicking Run to the verdict on the page."""
    return d.execute_async_script("""
      const done = arguments[arguments.length - 1];
      const v = document.getElementById('verdict');
      delete v.dataset.status;
      const t0 = performance.now();
      const obs = new MutationObserver(() => { if (v.dataset.status) { obs.disconnect(); done(performance.now() - t0); } });
      obs.observe(v, { attributes: true });
      document.getElementById('run').click();""")


def api_run(code):
    body = json.dumps({"language": "python", "files": [{"name": "main.py", "content": code}]}).encode()
    req = urllib.request.Request(BASE + "/v1/runs?wait=true", data=body, method="POST", headers={
        "content-type": "application/json", "authorization": "Bearer " + os.environ["API_KEY"]})
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=120) as r:
        v = json.load(r)
    return (time.perf_counter() - t0) * 1000, v


def playground(d, figures):
    d.set_script_timeout(120)
    d.get(BASE + "/play")
    wait_ready(d)
    accessible(d, "playground")
    code = d.find_element(By.ID, "code")
    code.clear()
    code.send_keys(HOSTILE)
    d.find_element(By.ID, "stdin").send_keys("ignored input")
    # Keyboard: Ctrl+Enter in the code runs it.
    code.send_keys(Keys.CONTROL, Keys.ENTER)
    WebDriverWait(d, 120).until(lambda d: d.find_element(By.ID, "verdict").get_attribute("data-status"))
    verdict = d.find_element(By.ID, "verdict").text
    check(verdict == "ok", f"playground: the verdict is shown (got {verdict!r}; status {d.find_element(By.ID, 'status').text!r})")
    out = d.find_element(By.ID, "stdout").text
    check("<script>window.__xss=1</script>" in out, f"playground: output containing HTML is shown as text ({out!r})")
    check(d.find_element(By.ID, "stderr").text.strip() == "<b>err</b>", "playground: stderr shown as text")
    check(d.execute_script("return window.__xss === undefined && !document.querySelector('#stdout script, #stdout img, #stderr b')"),
          "playground: submitted markup never runs nor renders")
    check(d.find_element(By.ID, "time").text.endswith("ms") and "B" in d.find_element(By.ID, "memory").text,
          "playground: time and memory are shown")
    run_id = d.find_element(By.ID, "run-id").text
    no_csp_violations(d, "playground")
    shot(d, "playground")

    # Measure: the same program, alternately through the page and the API.
    code.clear()
    code.send_keys('print("hi")')
    page_ms, api_ms = [], []
    for _ in range(int(os.environ.get("BENCH_RUNS", "5"))):
        page_ms.append(click_to_verdict(d))
        ms, v = api_run('print("hi")')
        check(v["result"]["status"] == "ok", f"API baseline run succeeded {v.get('result')}")
        api_ms.append(ms)
    figures["run_to_verdict_page_ms"] = page_ms
    figures["run_to_verdict_api_ms"] = api_ms
    figures["run_to_verdict_ratio_page_over_api"] = statistics.median(page_ms) / statistics.median(api_ms)

    # Time to interactive and weight of a fresh playground, against a plain
    # HTML page of the same server (no script) loaded the same way.
    tti, base_load, weight, transfer = [], [], [], []
    for _ in range(5):
        d.get(BASE + "/assets/none")
        base_load.append(d.execute_script("const n = performance.getEntriesByType('navigation')[0]; return n.loadEventEnd;"))
        d.get(BASE + "/play")
        wait_ready(d)
        r = d.execute_script("""
          const n = performance.getEntriesByType('navigation')[0];
          const res = performance.getEntriesByType('resource').filter((e) => !e.name.includes('/v1/'));
          return { ready: Number(document.body.dataset.readyAt),
                   bytes: n.encodedBodySize + res.reduce((s, e) => s + e.encodedBodySize, 0),
                   transfer: n.transferSize + res.reduce((s, e) => s + e.transferSize, 0) };""")
        tti.append(r["ready"])
        weight.append(r["bytes"])
        transfer.append(r["transfer"])
    figures["playground_bytes"] = weight[-1]
    figures["playground_transfer_bytes"] = transfer[-1]
    figures["playground_tti_ms"] = tti
    figures["plain_page_load_ms"] = base_load
    figures["tti_ratio_playground_over_plain_page"] = statistics.median(tti) / max(statistics.median(base_load), 0.1)
    d.get_log("browser")  # the missing asset's 404 is expected
    return run_id


def runs_pages(d, run_id):
    d.get(BASE + "/runs")
    wait_ready(d)
    accessible(d, "runs")
    WebDriverWait(d, 10).until(lambda d: d.find_elements(By.CSS_SELECTOR, f'#runs a[href="/runs?id={run_id}"]'))
    no_csp_violations(d, "runs")
    shot(d, "runs")
    d.find_element(By.CSS_SELECTOR, f'#runs a[href="/runs?id={run_id}"]').click()
    wait_ready(d)
    WebDriverWait(d, 10).until(lambda d: d.find_element(By.ID, "d-verdict").text == "ok")
    check("<script>" in d.find_element(By.ID, "d-stdout").text, "run detail: output shown as text")
    check(d.execute_script("return window.__xss === undefined"), "run detail: no submitted script ran")
    no_csp_violations(d, "run detail")
    shot(d, "run-detail")


def simple_page(d, path, name):
    d.get(BASE + path)
    wait_ready(d)
    accessible(d, name)
    no_csp_violations(d, name)
    shot(d, name)


def workflow_page(d, name):
    """A workflow run started from the page's session: its jobs, steps and
    log, live while it runs, then final."""
    started = d.execute_async_script("""
      const done = arguments[arguments.length - 1];
      R.api('POST', `/v1/repos/${arguments[0]}/runs`, { commit: arguments[1] })
        .then((t) => done(t.id), (e) => done('ERROR ' + e.message));""", os.environ["REPO"], os.environ["COMMIT"])
    check(not started.startswith("ERROR"), f"workflow run: started by a developer's session ({started})")
    d.get(BASE + "/workflows")
    wait_ready(d)
    WebDriverWait(d, 60).until(lambda d: d.find_elements(By.LINK_TEXT, name) or d.refresh())
    d.find_element(By.LINK_TEXT, name).click()
    wait_ready(d)
    # The first line arrives while the job still sleeps: live output.
    WebDriverWait(d, 120).until(lambda d: "from the job" in d.find_element(By.CSS_SELECTOR, "#w-jobs pre").text)
    live_state = d.find_element(By.ID, "w-state").text
    check(live_state in ("queued", "running"), f"workflow run: the log streams while the run is {live_state!r}")
    shot(d, "workflow-run-live")
    WebDriverWait(d, 120).until(lambda d: d.find_element(By.ID, "w-state").text in ("success", "failure", "cancelled"))
    # The page reloads the run once it ends: wait for the final rendering.
    time.sleep(1)
    WebDriverWait(d, 10).until(lambda d: "done" in d.find_element(By.CSS_SELECTOR, "#w-jobs pre").text
                               and d.find_elements(By.CSS_SELECTOR, "#w-jobs ol li"))
    state = d.find_element(By.ID, "w-state").text
    check(state == "success", f"workflow run: finished as success (got {state!r}: {d.find_element(By.ID, 'w-message').text!r})")
    log = d.find_element(By.CSS_SELECTOR, "#w-jobs pre").text
    check("<i>from the job</i>" in log, f"workflow run: the job's log is shown as text ({log!r})")
    check(not d.find_elements(By.CSS_SELECTOR, "#w-jobs pre i"), "workflow run: log markup is not rendered")
    check(d.find_elements(By.CSS_SELECTOR, "#w-jobs ol li"), "workflow run: the job's steps are listed")
    no_csp_violations(d, "workflow run")
    shot(d, "workflow-run")


def detector_works(d):
    """The CSP check can fail: an inline script injected now is refused and logged."""
    d.execute_script("const s = document.createElement('script'); s.textContent = 'window.__inline = 1'; document.body.append(s);")
    time.sleep(0.3)
    check(d.execute_script("return window.__inline === undefined"), "CSP: an injected inline script does not run")
    check(csp_violations(d), "CSP: the refused inline script is in the browser log (the detector works)")


def pages_phase():
    figures = {}
    d = browser()
    try:
        sign_in(d, "lena")
        detector_works(d)
        run_id = playground(d, figures)
        runs_pages(d, run_id)
        check(not d.find_elements(By.CSS_SELECTOR, 'nav a[href="/admin"]'), "learner: no admin page in the navigation")
        d.get(BASE + "/admin")
        check("Not for your role" in d.page_source, "learner: the admin page is refused")
        sign_out(d)

        sign_in(d, "dev")
        simple_page(d, "/workflows", "workflows")
        if os.environ.get("WORKFLOW"):
            workflow_page(d, os.environ["WORKFLOW"])
        sign_out(d)

        sign_in(d, "ada")
        simple_page(d, "/admin", "admin")
        d.find_element(By.ID, "k-label").send_keys("made in the browser <i>")
        d.find_element(By.CSS_SELECTOR, "#key-form button").click()
        WebDriverWait(d, 20).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#new-key pre"))
        check(d.find_element(By.CSS_SELECTOR, "#new-key pre").text.startswith("rk_"), "admin: a new key is shown once")
        WebDriverWait(d, 10).until(lambda d: "made in the browser <i>" in d.find_element(By.ID, "keys").text)
        no_csp_violations(d, "admin after creating a key")
        shot(d, "admin-key-created")
        sign_out(d)

        sign_in(d, "rita")
        simple_page(d, "/releases", "releases")
        sign_out(d)
    except Exception:
        shot(d, "failure")
        print("page source at failure:\n" + d.page_source[:4000], file=sys.stderr)
        raise
    finally:
        d.quit()
    with open(os.path.join(OUT, "figures.json"), "w") as f:
        json.dump(figures, f, indent=2)
    print(json.dumps(figures, indent=2))


def decide(d, promotion, reason):
    d.get(BASE + "/releases")
    wait_ready(d)
    card = f'[data-promotion="{promotion}"]'
    WebDriverWait(d, 10).until(lambda d: d.find_elements(By.CSS_SELECTOR, card))
    d.find_element(By.CSS_SELECTOR, f"{card} textarea").send_keys(reason)
    d.find_element(By.CSS_SELECTOR, f"{card} button.approve").click()
    WebDriverWait(d, 20).until(lambda d: d.find_element(By.CSS_SELECTOR, f"{card} .outcome").text)
    o = d.find_element(By.CSS_SELECTOR, f"{card} .outcome")
    return o.text, o.get_attribute("data-code")


def releases_phase():
    image, env = os.environ["IMAGE"], os.environ["ENVIRONMENT"]
    d = browser()
    try:
        # Rob, a release manager, asks for the promotion (through the same
        # API the pages use, with his session and its CSRF token)...
        sign_in(d, "rob")
        d.get(BASE + "/releases")
        wait_ready(d)
        check(env in d.find_element(By.ID, "environments").text, "releases: the environments are listed")
        promotion = d.execute_async_script("""
          const done = arguments[arguments.length - 1];
          R.api('POST', '/v1/promotions', { image: arguments[0], environment: arguments[1] })
            .then((p) => done(p.id), (e) => done('ERROR ' + e.message));""", image, env)
        check(not promotion.startswith("ERROR"), f"releases: the requester asked for the promotion ({promotion})")
        # ...and may not approve it himself.
        d.get(BASE + "/releases")
        wait_ready(d)
        card = f'[data-promotion="{promotion}"]'
        WebDriverWait(d, 10).until(lambda d: d.find_elements(By.CSS_SELECTOR, card))
        text = d.find_element(By.CSS_SELECTOR, card).text
        check(image in text, f"releases: the card shows exactly what will be deployed ({image})")
        check("passed: signature" in text, f"releases: the card shows what verification found ({text!r})")
        accessible(d, "releases")
        text, code = decide(d, promotion, "my own change")
        check("Not recorded" in text and code == "self_approval", f"releases: the requester cannot approve ({text!r}, {code!r})")
        no_csp_violations(d, "releases (requester)")
        shot(d, "releases-requester-refused")
        sign_out(d)

        # A developer sees the page without the approve form.
        sign_in(d, "dev")
        d.get(BASE + "/releases")
        wait_ready(d)
        WebDriverWait(d, 10).until(lambda d: d.find_elements(By.CSS_SELECTOR, card))
        check(not d.find_elements(By.CSS_SELECTOR, f"{card} form"), "releases: no approve form for a developer")
        sign_out(d)

        # Rita, another release manager, approves with a reason.
        sign_in(d, "rita")
        text, _ = decide(d, promotion, "reviewed the scan <b>and</b> the diff")
        check("Recorded: approve" in text, f"releases: a release manager approves ({text!r})")
        no_csp_violations(d, "releases (approver)")
        shot(d, "releases-approved")
        WebDriverWait(d, 20).until(lambda d: image in d.find_element(By.CSS_SELECTOR, f'[data-environment="{env}"]').text
                                   or d.refresh())
        no_csp_violations(d, "releases (deployed)")
        shot(d, "releases-deployed")
        sign_out(d)
    except Exception:
        shot(d, "failure-releases")
        print("page source at failure:\n" + d.page_source[:4000], file=sys.stderr)
        raise
    finally:
        d.quit()
    print(promotion)


if __name__ == "__main__":
    try:
        (releases_phase if os.environ.get("PHASE") == "releases" else pages_phase)()
    except AssertionError as e:
        print(f"FAILED: {e}", file=sys.stderr)
        sys.exit(1)
    print(f"{len(CHECKS)} checks passed")

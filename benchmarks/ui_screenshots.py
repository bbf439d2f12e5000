"""Screenshots of the MLflow UI after the offline sweep, taken with headless Chromium: the runs
table, the compare view of the sweep's trials (parallel coordinates of the searched parameters
against val/worst) and the best run's page with its model. For docs/ and for anyone to rerun;
not part of CI.

    python benchmarks/ui_screenshots.py                       # runs the offline sweep first (~3 min)
    python benchmarks/ui_screenshots.py --tracking-uri sqlite:///mlflow.db --sweep NAME   # an existing one

Needs Debian's `chromium` (`apt-get install chromium`) and Playwright (`pip install playwright`;
it drives that Chromium, nothing is downloaded). Writes docs/mlflow_*.png (see --out).
"""
import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import platform as _platform_check  # noqa: F401  (run from the repo root: the shim must serve it)

from backdrop import experiments
from backdrop.distributed import free_port
from backdrop.errors import UserError, one_line_errors

REPO = Path(__file__).resolve().parents[1]
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]
# The UI's model-training layout (its default is the GenAI one; the choice is a URL parameter or
# the toggle at the top left, which the browser then remembers).
VIEW = "workflowType=machine_learning"


def run_sweep(uri, storage, name):
    """The README's offline sweep, into its own store."""
    cmd = [sys.executable, "-m", "platform.sweep", "--tracking-uri", uri, "--storage-path", storage, "--name", name]
    print("running:", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=REPO, check=True)


def start_ui(uri, port):
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
                               "--host", "127.0.0.1", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return server
        except OSError:
            time.sleep(1)
    server.kill()
    raise UserError("mlflow ui did not answer within 120 s")


class Browser:
    """Headless Chromium driven by Playwright: a page is shot once what it shows has loaded."""

    def __init__(self, chromium):
        try:
            from playwright.sync_api import sync_playwright
        except ImportError:
            raise UserError("this script drives Chromium with Playwright: pip install playwright") from None
        self._pw = sync_playwright().start()
        self.browser = self._pw.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS, headless=True)

    def page(self, url, ready_text, size=(1600, 1000)):
        page = self.browser.new_page(viewport={"width": size[0], "height": size[1]})
        page.goto(url)
        page.get_by_text(ready_text).first.wait_for(timeout=120_000)
        close = page.get_by_role("button", name="Close")       # the assistant's side panel
        if close.count():
            close.first.click()
        return page

    def shoot(self, page, out):
        page.wait_for_timeout(2000)                            # charts finish drawing
        page.screenshot(path=str(out))
        page.close()
        print(f"wrote {out}", flush=True)

    def close(self):
        self.browser.close()
        self._pw.stop()


def compare_view(browser, url, searched, out):
    """The compare page with the parallel-coordinates plot of the searched parameters against
    val/worst (the page picks three parameters and the first metric by itself)."""
    page = browser.page(url, "Parallel Coordinates Plot", size=(1600, 1300))
    page.get_by_text("Clear All").click()
    params, metrics = page.get_by_role("combobox").all()[:2]
    params.click()
    for name in searched:
        params.fill(name)
        page.keyboard.press("Enter")
    page.keyboard.press("Escape")
    metrics.click()
    metrics.fill("val/worst")
    page.keyboard.press("Enter")
    page.keyboard.press("Escape")
    browser.shoot(page, out)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tracking-uri", help="an existing store (default: run the offline sweep into a new one)")
    p.add_argument("--sweep", help="with --tracking-uri: the sweep's name (default: the newest sweep)")
    p.add_argument("--out", default=str(REPO / "docs"), help="folder for the PNG files (default: docs/)")
    args = p.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        raise UserError("no chromium on PATH; install Debian's package: apt-get install chromium")
    import mlflow
    work = Path(tempfile.mkdtemp(prefix="backdrop-ui-"))
    uri = args.tracking_uri
    if not uri:
        uri, args.sweep = f"sqlite:///{work / 'mlflow.db'}", "ui-demo"
        run_sweep(uri, str(work / "ray"), args.sweep)
    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name(experiments.SWEEPS)
    if exp is None:
        raise UserError(f"{uri} has no experiment {experiments.SWEEPS}; run a sweep first")
    parents = client.search_runs([exp.experiment_id], "tags.`backdrop.role` = 'sweep'" +
                                 (f" and tags.`backdrop.sweep` = '{args.sweep}'" if args.sweep else ""),
                                 order_by=["attributes.start_time DESC"], max_results=1)
    if not parents:
        raise UserError(f"no sweep {args.sweep or ''} in {uri}")
    sweep = parents[0].data.tags["backdrop.sweep"]
    trials = client.search_runs([exp.experiment_id], f"tags.`backdrop.sweep` = '{sweep}' and tags.`backdrop.role` = 'trial'")
    best = [r for r in trials if "backdrop.best" in r.data.tags]
    searched = sorted(trials[0].data.tags.get("searched", "").split(",")) if trials else []
    port = free_port()
    server = start_ui(uri, port)
    base = f"http://127.0.0.1:{port}/#"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    browser = Browser(chromium)
    try:
        runs = browser.page(f"{base}/experiments/{exp.experiment_id}/runs?{VIEW}", sweep)
        runs.locator('button[data-component-id*="runnamecellrenderer"]').first.click()   # show the trials
        runs.get_by_text(f"{sweep}-").first.wait_for(timeout=60_000)
        browser.shoot(runs, out / "mlflow_runs.png")
        ids = urllib.parse.quote(json.dumps([r.info.run_id for r in trials]))
        shown = urllib.parse.quote(json.dumps([exp.experiment_id]))
        compare_view(browser, f"{base}/compare-runs?runs={ids}&experiments={shown}&{VIEW}", searched,
                     out / "mlflow_compare.png")
        if best:
            run = best[0]
            browser.shoot(browser.page(f"{base}/experiments/{exp.experiment_id}/runs/{run.info.run_id}?{VIEW}",
                                       run.info.run_name), out / "mlflow_best_run.png")
    finally:
        browser.close()
        server.terminate()
        server.wait(timeout=30)
    print(f"store: {uri}  sweep: {sweep}")


if __name__ == "__main__":
    with one_line_errors("ui_screenshots"):
        main()

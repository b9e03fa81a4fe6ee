"""Lesson 05 in a real browser: JupyterLab, a headless Chromium driven by Playwright, Run All as a learner does it.

nbval and papermill run the notebooks without a frontend, so they never see what a learner sees: rendered plots,
ipywidgets, the review panel (shown only when ``review.interactive_frontend()`` is true) and a click that saves a
rating. This test prepares a run folder (the splits and a LoRA run, smoke profile), starts JupyterLab on it,
runs every cell of 05 from the Run menu and checks the page and the ratings file. Screenshots stay in
``runs/browser-smoke/screenshots/`` for people to look at.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Locator, expect, sync_playwright

from ftlib.measure import review

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parent.parent
RUN_DIR = ROOT / "runs" / "browser-smoke"
# Lesson 05 reads the splits and an adapter; it scores the runs it finds (nbval and the listings run cover QLoRA).
NOTEBOOK = "notebooks/05_evaluation.ipynb"
CHROMIUM = Path(os.environ.get("FTLIB_BROWSER", "/usr/bin/chromium"))
# Playwright's own browser download needs the internet; Debian's chromium needs only the apt mirror.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# JupyterLab answers in a few seconds on an idle machine; the CPU is shared with training runs, so allow more.
SERVER_START_S = 180
# Lesson 05 scores three runs in the smoke profile; a busy 2-core machine can take many times an idle one's time.
RUN_ALL_S = 1800
# Loading the page, the kernel start and one click's round trip through the kernel.
UI_S = 180
NOTE = "browser test: saved from a click"
# The last line of a traceback: "ValueError: ...", "KeyboardInterrupt", "DataError: ...".
ERROR_LINE = re.compile(r"^\w*(Error|Exception|Interrupt)\b.*$", re.M)


def browser_missing_reason() -> str | None:
    """Why there is no browser to drive, or None when there is one."""
    if CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK):
        return None
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        how = "not root" if shutil.which("apt-get") else "no apt-get"
        return f"{CHROMIUM} not found and tools/ensure_browser.sh could not install it here ({how}): install Chromium"
    return f"{CHROMIUM} not found: run tools/ensure_browser.sh (make test does) to install Debian's chromium"


def free_port() -> int:
    """A TCP port nobody listens on now (the server gets port_retries=0, so a race fails loudly)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def run_dir() -> Path:
    """``runs/browser-smoke/``, cleared, with what lesson 05 reads: the curated splits and lesson 03's LoRA run.

    Made by the calls the notebooks make (``Lesson.split`` rebuilds the splits as 02 does; ``train.train`` with
    03's config), not by running 02 and 03 under papermill: nbval runs those notebooks, and their plots, merge and
    memory tables are of no use here (64 s of a 175 s test, 2026-12-07)."""
    reason = browser_missing_reason()
    if reason:
        pytest.skip(reason)  # before anything trains: without a browser the run is of no use
    import ftlib.lessons.lesson as lesson
    from ftlib.engine import train

    shutil.rmtree(RUN_DIR, ignore_errors=True)
    prepared = lesson.start("smoke", run_dir=str(RUN_DIR), lesson_method="lora")
    train_set, val_set = prepared.split("train"), prepared.split("val")
    train.train(
        prepared.profile.base_model,
        train_set,
        val_set,
        prepared.paths.lora,
        config=prepared.profile.train_config(),
        task=prepared.task,
        device=prepared.device,
    )
    return RUN_DIR


@dataclass
class Lab:
    url: str
    token: str
    log: Path


def _lab_settings(settings_dir: Path) -> None:
    """User settings for the test's JupyterLab (a fresh folder, so nobody's own settings leak in).

    Autosave off: the test opens the course's own notebook, which must never be saved with outputs.
    No news prompt: its toast would cover part of the screenshots.
    """
    for plugin, settings in {
        "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
        "@jupyterlab/apputils-extension/notification": {"fetchNews": "false"},
    }.items():
        path = settings_dir / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(settings))


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture(scope="module")
def lab(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """JupyterLab on 127.0.0.1 (free port, random token, root: the repository), shut down even on failure."""
    port, token = free_port(), secrets.token_hex(16)
    home = tmp_path_factory.mktemp("lab")
    _lab_settings(home / "settings")
    env = os.environ | {
        "FTLIB_PROFILE": "smoke",
        "FTLIB_RUN_DIR": str(run_dir),
        "TQDM_DISABLE": "1",
        "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
    }
    log = run_dir / "jupyterlab.log"
    checkpoint = ROOT / "notebooks" / ".ipynb_checkpoints" / f"{Path(NOTEBOOK).stem}-checkpoint.ipynb"
    had_checkpoint, had_folder = checkpoint.exists(), checkpoint.parent.exists()
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        f"--IdentityProvider.token={token}",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--ServerApp.root_dir={ROOT}",
        "--ServerApp.allow_root=True",
    ]  # CI runs as root
    with open(log, "w") as handle:
        # Its own process group, so the fallback kill below also reaches the kernels it started.
        server = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_S
        while not _answers(f"{base}/api/status?token={token}"):
            if server.poll() is not None:
                pytest.fail(f"JupyterLab exited with code {server.returncode}:\n{log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"JupyterLab did not answer within {SERVER_START_S} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield Lab(base, token, log)
    finally:
        _shut_down(server, base, token)
        # JupyterLab copies a notebook it opens into .ipynb_checkpoints/ (git-ignored): remove what it added.
        if not had_checkpoint:
            checkpoint.unlink(missing_ok=True)
        if not had_folder and checkpoint.parent.is_dir() and not any(checkpoint.parent.iterdir()):
            checkpoint.parent.rmdir()


def _shut_down(server: subprocess.Popen, base: str, token: str) -> None:
    """Ask the server to stop (it shuts its kernels down), then terminate, then kill its process group."""
    if server.poll() is None:
        request = urllib.request.Request(
            f"{base}/api/shutdown", method="POST", headers={"Authorization": f"token {token}"}
        )
        try:
            urllib.request.urlopen(request, timeout=10).close()
        except (urllib.error.URLError, OSError):
            pass
    for sig, wait_s in ((None, 30), (signal.SIGTERM, 15), (signal.SIGKILL, 15)):
        if sig is not None:
            try:
                os.killpg(server.pid, sig)
            except ProcessLookupError:
                pass
        try:
            server.wait(timeout=wait_s)
            break
        except subprocess.TimeoutExpired:
            continue
    try:  # kernels left behind by a server that had to be killed
        os.killpg(server.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


# Every code cell of the notebook attached and executed ("[12]:", not "[ ]:" or "[*]:"), and the kernel idle both in
# the notebook's execution indicator and in the status bar (the indicator alone reads idle before the kernel connects).
ALL_RUN_JS = """(codeCells) => {
    const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
    const prompts = [...panel.querySelectorAll('.jp-CodeCell .jp-InputPrompt')];
    const indicator = panel.querySelector('.jp-Notebook-ExecutionIndicator');
    const statusBar = document.querySelector('#jp-main-statusbar');
    return prompts.length === codeCells && prompts.every(p => /^\\[\\d+\\]:$/.test(p.textContent.trim()))
        && indicator !== null && indicator.dataset.status === 'idle'
        && statusBar !== null && statusBar.textContent.includes('| Idle');
}"""


def code_cells(notebook: Path) -> int:
    """How many code cells the notebook file holds."""
    return sum(cell["cell_type"] == "code" for cell in json.loads(notebook.read_text())["cells"])


def error_outputs(notebook: Locator) -> list[str]:
    """The text of every error output in a notebook panel.

    JupyterLab renders an error (a traceback) with the stderr mime type, like a warning, so the text tells them
    apart: a traceback header or an exception's last line.
    """
    stderr = notebook.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')
    return [
        text
        for text in stderr.all_text_contents()
        if "Traceback (most recent call last)" in text or ERROR_LINE.search(text)
    ]


def test_lesson_05_runs_in_jupyterlab_and_a_click_saves_a_rating(lab: Lab, run_dir: Path):
    """Run All from the menu: no errors, the loss curve drawn, the review panel shown, a click saved to disk."""
    shots = run_dir / "screenshots"
    shots.mkdir(exist_ok=True)
    ratings_path = run_dir / "eval" / "review_ratings.csv"
    console: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.set_default_timeout(UI_S * 1000)
            # expect() has its own 5 s default, which page.set_default_timeout does not change: on a slow 2-core
            # machine the kernel took longer than that to report Idle (2026-12-03), so it gets the same bound.
            expect.set_options(timeout=UI_S * 1000)
            page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
            page.on("pageerror", lambda error: console.append(f"pageerror: {error}"))
            page.goto(f"{lab.url}/lab/tree/{NOTEBOOK}?token={lab.token}")
            notebook = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
            expect(page.locator("#jp-main-statusbar")).to_contain_text("| Idle")  # the kernel is up
            expect(notebook.locator(".jp-CodeCell")).to_have_count(code_cells(ROOT / NOTEBOOK))

            # As a learner: Run menu > Run All Cells.
            page.locator(".lm-MenuBar-item", has_text=re.compile(r"^Run$")).click()
            page.locator(".lm-Menu-item:visible", has_text=re.compile(r"^Run All Cells")).click()
            # Run All queues every cell at once; wait for the first one to start before waiting for idle.
            expect(notebook.locator(".jp-CodeCell .jp-InputPrompt").first).not_to_have_text("[ ]:")
            page.wait_for_function(ALL_RUN_JS, arg=code_cells(ROOT / NOTEBOOK), timeout=RUN_ALL_S * 1000, polling=1000)
            page.screenshot(path=str(shots / "01_after_run_all.png"), full_page=True)

            errors = error_outputs(notebook)
            assert not errors, f"error output in the notebook:\n{errors[0][-3000:]}"

            loss_input = page.locator(".jp-InputArea", has_text="plot_loss_curves")
            loss_cell = notebook.locator(".jp-CodeCell", has=loss_input)
            expect(loss_cell).to_have_count(1)
            image = loss_cell.locator(".jp-OutputArea-output img")
            expect(image).to_have_count(1)
            image.scroll_into_view_if_needed()
            assert image.evaluate("img => img.complete && img.naturalWidth > 0"), "the loss curve image did not load"
            loss_cell.locator(".jp-OutputArea").screenshot(path=str(shots / "02_loss_curves.png"))

            # The review panel shows only when review.interactive_frontend() holds: it must in JupyterLab.
            expect(notebook.locator(".jp-OutputArea-output", has_text="Review panel skipped")).to_have_count(0)
            panel = notebook.locator(".widget-vbox", has=page.locator("button.jupyter-button", has_text="correct"))
            expect(panel).to_have_count(1)
            panel.scroll_into_view_if_needed()
            expect(panel).to_contain_text("answer 1 of")
            expect(panel).to_contain_text("not rated yet")
            # textContent, not innerText: JupyterLab's content-visibility leaves innerText empty off screen.
            shown = re.search(r"answer 1 of (\d+) \(output (o[0-9a-f]{10})\)", panel.text_content())
            assert shown, f"no answer count and output id in the panel: {panel.text_content()[:200]!r}"
            answers, rated_id = int(shown.group(1)), shown.group(2)
            expect(panel).to_contain_text(f"0/{answers}")
            assert not ratings_path.exists(), "a ratings file before any click"

            panel.locator("textarea").fill(NOTE)
            panel.screenshot(path=str(shots / "03_review_panel_before_click.png"))
            panel.locator("button.jupyter-button", has_text=re.compile(r"^correct$")).click()
            expect(panel).to_contain_text("answer 2 of")  # the kernel saved, then moved on
            expect(panel).to_contain_text(f"1/{answers}")  # the progress bar's label
            panel.screenshot(path=str(shots / "04_review_panel_after_click.png"))
        except Exception:
            page.screenshot(path=str(shots / "failure.png"))  # what the page showed when the test failed
            raise
        finally:
            (run_dir / "browser_console.log").write_text("\n".join(console) + "\n")
            browser.close()

    ratings = review.load_ratings(ratings_path)
    assert list(ratings) == [rated_id]
    assert ratings[rated_id]["rating"] == "correct" and ratings[rated_id]["note"] == NOTE

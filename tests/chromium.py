"""A tiny headless-Chromium driver over the DevTools protocol (CDP), standard library only.

The browser is started with ``--remote-debugging-pipe``: it reads NUL-terminated JSON messages on its fd 3
and writes them on its fd 4, so it listens on no port. Page commands use CDP's flat session mode
(``Target.attachToTarget`` with ``flatten: true``; each message carries a ``sessionId``).
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

INSTALL_HINT = ("install Debian's `chromium` package (`apt-get install chromium`; the project's CI installs it) "
                "or point $CNNRAY_CHROMIUM at a Chromium/Chrome executable")

# Page JS for Page.images(): draws each loaded <img> onto a white canvas and takes the variance of the RGB luminance
# (0-255 scale, like png_variance); a canvas tainted by a cross-origin image makes getImageData throw -> null.
_IMAGES_JS = r"""
Array.from(imgs).filter((img) => img instanceof HTMLImageElement).map((img) => {
  let variance = null;
  if (img.complete && img.naturalWidth > 0) {
    try {
      const scale = Math.min(1, 1024 / Math.max(img.naturalWidth, img.naturalHeight));  // bound the work
      const w = Math.max(1, Math.round(img.naturalWidth * scale));
      const h = Math.max(1, Math.round(img.naturalHeight * scale));
      const canvas = document.createElement('canvas');
      canvas.width = w; canvas.height = h;
      const ctx = canvas.getContext('2d');
      ctx.fillStyle = '#fff'; ctx.fillRect(0, 0, w, h);  // transparent pixels count as white, not black
      ctx.drawImage(img, 0, 0, w, h);
      const d = ctx.getImageData(0, 0, w, h).data;
      let sum = 0, sq = 0;
      const n = d.length / 4;
      for (let i = 0; i < d.length; i += 4) {
        const y = 0.299 * d[i] + 0.587 * d[i + 1] + 0.114 * d[i + 2];
        sum += y; sq += y * y;
      }
      const mean = sum / n;
      variance = Math.max(0, sq / n - mean * mean);
    } catch (e) {
      variance = null;  // SecurityError: tainted canvas
    }
  }
  return {src: (img.currentSrc || img.src || '').slice(0, 80), complete: img.complete,
          naturalWidth: img.naturalWidth, naturalHeight: img.naturalHeight, variance};
})
"""


def find_chromium() -> str | None:
    """Path of a Chromium executable: $CNNRAY_CHROMIUM, then chromium, chromium-browser, google-chrome on PATH."""
    env = os.environ.get("CNNRAY_CHROMIUM")
    if env:
        return shutil.which(env)
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def png_variance(path: str | Path) -> float:
    """Variance of a PNG's RGB luminance on a 0-255 scale (transparent pixels composited onto white)."""
    import matplotlib.image
    import numpy as np

    img = np.asarray(matplotlib.image.imread(str(path)), dtype=np.float64)  # PNG -> floats in [0, 1]
    if img.ndim == 2:
        lum = img
    else:
        rgb = img[..., :3] if img.shape[-1] >= 3 else np.repeat(img[..., :1], 3, axis=-1)
        if img.shape[-1] in (2, 4):
            alpha = img[..., -1:]
            rgb = rgb * alpha + (1.0 - alpha)
        lum = rgb @ np.array([0.299, 0.587, 0.114])
    return float(np.var(lum * 255.0))


class _Waiter:
    """One pending command: the reader thread fills `msg` and sets `event`."""

    __slots__ = ("event", "msg")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.msg: dict | None = None


class Browser:
    """A headless Chromium process driven over a CDP pipe; use as a context manager."""

    def __init__(self, executable: str | None = None, width: int = 1280, height: int = 1600,
                 timeout_s: float = 60.0) -> None:
        """Start Chromium and check it answers (Browser.getVersion) within `timeout_s`."""
        exe = executable or find_chromium()
        if not exe:
            raise RuntimeError(f"Chromium not found: {INSTALL_HINT}")
        self.executable = exe
        self.width, self.height, self.timeout_s = width, height, timeout_s
        self._ids = itertools.count(1)
        self._lock = threading.Lock()  # guards _waiters, _pages and _dead
        self._write_lock = threading.Lock()  # one writer at a time: messages must not interleave
        self._waiters: dict[int, _Waiter] = {}
        self._pages: dict[str, Page] = {}
        self._dead: str | None = None  # why the connection ended, once it has
        self._closed = False
        self.profile_dir = tempfile.mkdtemp(prefix="cnnray-chromium-")
        # stderr to a file: a pipe nobody drains fills up (Chromium logs a lot) and would block the browser.
        self._stderr = tempfile.NamedTemporaryFile(prefix="cnnray-chromium-", suffix=".log", delete=False)
        to_r, self._to_w = os.pipe()
        self._from_r, from_w = os.pipe()
        # A shell maps the child's ends onto fds 3/4 rather than a preexec_fn (unsafe in a threaded process). They
        # are first moved to fds >= 10 so that `3<&A 4>&B` cannot clobber one with the other; bash, not sh: dash
        # only takes one-digit fds in redirections.
        a = _dup_high(to_r)
        b = _dup_high(from_w)
        os.close(to_r)
        os.close(from_w)
        args = [f"--window-size={width},{height}", "--headless=new", "--no-sandbox", "--disable-gpu",
                "--no-first-run", "--no-default-browser-check", "--disable-dev-shm-usage",
                f"--user-data-dir={self.profile_dir}", "--remote-debugging-pipe", "about:blank"]
        script = f'exec 3<&{a} 4>&{b} {a}<&- {b}>&-; exec "$0" "$@"'
        try:
            # start_new_session: Ctrl-C in the terminal goes to pytest alone (the browser quits when its pipe closes).
            self.proc = subprocess.Popen([shutil.which("bash") or "/bin/bash", "-c", script, exe, *args],
                                         stdin=subprocess.DEVNULL, stdout=self._stderr, stderr=self._stderr,
                                         pass_fds=(a, b), start_new_session=True)
        except BaseException:
            for fd in (a, b, self._to_w, self._from_r):
                os.close(fd)
            self._cleanup_files()
            raise
        os.close(a)
        os.close(b)
        self._reader = threading.Thread(target=self._read_loop, name="chromium-cdp-reader", daemon=True)
        self._reader.start()
        try:
            self.version = self.send("Browser.getVersion", timeout_s=timeout_s)
        except BaseException:
            self.close()
            raise

    # -- connection ---------------------------------------------------------------------------------------------

    def stderr_tail(self, chars: int = 3000) -> str:
        """The last `chars` characters Chromium wrote to stdout/stderr."""
        try:
            return Path(self._stderr.name).read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def _death_message(self) -> str:
        try:
            rc = self.proc.wait(timeout=2)  # a closed pipe usually means an exit: give it a moment to be reaped
        except subprocess.TimeoutExpired:
            rc = None
        state = f"exited with rc={rc}" if rc is not None else "closed its DevTools pipe"
        return f"Chromium ({self.executable}) {state}; stderr tail:\n{self.stderr_tail()}"

    def _read_loop(self) -> None:
        buf = b""
        try:
            while True:
                chunk = os.read(self._from_r, 1 << 16)
                if not chunk:
                    break
                buf += chunk
                *messages, buf = buf.split(b"\0")
                for raw in messages:
                    if raw:
                        self._dispatch(json.loads(raw))
        except OSError:
            pass  # the fd was closed by close()
        finally:
            with self._lock:
                self._dead = self._dead or "pipe closed"
                waiters = list(self._waiters.values())
            for w in waiters:  # wake everybody: their commands will never be answered
                w.event.set()

    def _dispatch(self, msg: dict) -> None:
        if "id" in msg:
            with self._lock:
                waiter = self._waiters.get(msg["id"])
            if waiter is not None:
                waiter.msg = msg
                waiter.event.set()
            return
        page = self._pages.get(msg.get("sessionId", ""))
        if page is not None:
            page._on_event(msg["method"], msg.get("params", {}))

    def _write(self, method: str, msg_id: int, params: dict | None, session_id: str | None) -> None:
        msg: dict[str, Any] = {"id": msg_id, "method": method, "params": params or {}}
        if session_id:
            msg["sessionId"] = session_id
        data = memoryview(json.dumps(msg).encode() + b"\0")
        with self._write_lock:
            try:
                while data:  # os.write may write less than asked on a pipe
                    data = data[os.write(self._to_w, data):]
            except OSError as e:  # EPIPE once the browser is gone
                raise RuntimeError(f"cannot send {method}: {e}; {self._death_message()}") from None

    def _post(self, method: str, params: dict | None = None, session_id: str | None = None) -> None:
        """Write one command without waiting for (or reading) its answer."""
        self._write(method, next(self._ids), params, session_id)

    def send(self, method: str, params: dict | None = None, session_id: str | None = None,
             timeout_s: float | None = None) -> dict:
        """Send one CDP command and wait for its result; RuntimeError on a CDP error, TimeoutError on no answer."""
        if self._closed:
            raise RuntimeError(f"cannot send {method}: the browser is closed")
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        waiter = _Waiter()
        with self._lock:
            if self._dead:
                raise RuntimeError(f"cannot send {method}: {self._death_message()}")
            msg_id = next(self._ids)
            self._waiters[msg_id] = waiter
        try:
            self._write(method, msg_id, params, session_id)
            if not waiter.event.wait(timeout_s):
                raise TimeoutError(f"no answer to {method} in {timeout_s:.0f} s"
                                   + ("" if self.proc.poll() is None else f"; {self._death_message()}"))
        finally:
            with self._lock:
                self._waiters.pop(msg_id, None)
        if waiter.msg is None:
            raise RuntimeError(f"no answer to {method}: {self._death_message()}")
        if "error" in waiter.msg:
            err = waiter.msg["error"]
            raise RuntimeError(f"{method} failed: {err.get('message')} {err.get('data', '')}".strip())
        return waiter.msg.get("result", {})

    # -- pages --------------------------------------------------------------------------------------------------

    def open(self, url: str) -> Page:
        """Open `url` in a new tab and wait for its load event; the tab records console errors from the start."""
        target = self.send("Target.createTarget", {"url": "about:blank"})
        session = self.send("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True})
        page = Page(self, target["targetId"], session["sessionId"])
        with self._lock:
            self._pages[page.session_id] = page
        for domain in ("Page", "Runtime", "Log", "Network"):  # Network: to record the URLs the page requests
            page.send(f"{domain}.enable")
        # The headless window's viewport is the window size less its (invisible) toolbars: pin it exactly.
        page.send("Emulation.setDeviceMetricsOverride", {"width": self.width, "height": self.height,
                                                         "deviceScaleFactor": 1, "mobile": False})
        page.navigate(url)
        return page

    # -- shutdown -----------------------------------------------------------------------------------------------

    def close(self, timeout_s: float = 10.0) -> None:
        """Close the browser (Browser.close, then kill after `timeout_s`) and remove its profile dir."""
        if self._closed:
            return
        if self.proc.poll() is None and not self._dead:
            try:
                self.send("Browser.close", timeout_s=timeout_s)
            except (RuntimeError, TimeoutError):
                pass  # killed below
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            try:  # the whole process group (renderers, zygotes): start_new_session made it ours alone
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                self.proc.kill()
            self.proc.wait(timeout=timeout_s)
        self._closed = True
        os.close(self._to_w)
        self._reader.join(timeout=timeout_s)  # EOF once the browser is gone; closing its fd would not wake it
        os.close(self._from_r)
        self._cleanup_files()

    def _cleanup_files(self) -> None:
        self._stderr.close()
        for _ in range(3):  # Chromium's helpers may still be writing into the profile for a moment
            shutil.rmtree(self.profile_dir, ignore_errors=True)
            if not os.path.exists(self.profile_dir):
                break
            time.sleep(0.2)
        try:
            os.unlink(self._stderr.name)
        except OSError:
            pass

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _dup_high(fd: int, low: int = 10) -> int:
    """A close-on-exec duplicate of `fd` numbered >= `low` (pass_fds makes it inheritable in the child only)."""
    import fcntl

    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, low)


class Page:
    """One tab, attached in flat session mode."""

    def __init__(self, browser: Browser, target_id: str, session_id: str) -> None:
        self.browser, self.target_id, self.session_id = browser, target_id, session_id
        self.console_errors: list[str] = []
        self.requests: list[str] = []  # every URL the page requested (data: URLs left out), in order
        self._loads = 0  # Page.loadEventFired count: navigate() waits for it to grow
        self._cond = threading.Condition()
        self._crashed = False

    def send(self, method: str, params: dict | None = None, timeout_s: float | None = None) -> dict:
        """Send one CDP command to this tab."""
        if self._crashed:
            raise RuntimeError(f"cannot send {method}: the page crashed; {self.browser._death_message()}")
        return self.browser.send(method, params, session_id=self.session_id, timeout_s=timeout_s)

    def _on_event(self, method: str, params: dict) -> None:
        # Runs on the reader thread: never wait for an answer here (it would be read by this same thread).
        if method == "Page.loadEventFired":
            with self._cond:
                self._loads += 1
                self._cond.notify_all()
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            text = " ".join(_remote_object_text(a) for a in params.get("args", []))
            self.console_errors.append(f"console.{params['type']}: {text}{_where(params.get('stackTrace'))}")
        elif method == "Runtime.exceptionThrown":
            self.console_errors.append(f"uncaught: {_exception_text(params.get('exceptionDetails', {}))}")
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            url = f" ({entry['url']})" if entry.get("url") else ""
            self.console_errors.append(f"log[{entry.get('source', '?')}]: {entry.get('text', '')}{url}")
        elif method == "Network.requestWillBeSent":
            url = params.get("request", {}).get("url", "")
            if not url.startswith("data:"):
                self.requests.append(url)
        elif method == "Page.javascriptDialogOpening":  # an unanswered alert() would block the page forever
            self.browser._post("Page.handleJavaScriptDialog", {"accept": True}, self.session_id)
        elif method in ("Inspector.targetCrashed", "Inspector.detached"):
            self._crashed = True
            with self._cond:
                self._cond.notify_all()

    def navigate(self, url: str, timeout_s: float | None = None) -> None:
        """Go to `url` and wait for Page.loadEventFired; RuntimeError if the navigation fails."""
        timeout_s = self.browser.timeout_s if timeout_s is None else timeout_s
        with self._cond:
            loads = self._loads
        result = self.send("Page.navigate", {"url": url}, timeout_s=timeout_s)
        if result.get("errorText"):
            raise RuntimeError(f"navigation to {url} failed: {result['errorText']}")
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._loads == loads and not self._crashed:
                left = deadline - time.monotonic()
                if left <= 0 or self.browser._dead:
                    break
                self._cond.wait(min(left, 0.5))  # wakes up now and then to notice a dead browser
            if self._loads == loads:
                why = "the page crashed" if self._crashed else f"no load event in {timeout_s:.0f} s"
                extra = f"; {self.browser._death_message()}" if self.browser._dead else ""
                raise TimeoutError(f"opening {url}: {why}{extra}")

    def evaluate(self, expression: str, timeout_s: float | None = None) -> Any:
        """Evaluate JS in the page (promises awaited) and return its JSON value; RuntimeError on a JS exception."""
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": True, "userGesture": True}, timeout_s=timeout_s)
        if "exceptionDetails" in result:
            raise RuntimeError(f"JS error in {expression[:200]!r}: {_exception_text(result['exceptionDetails'])}")
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout_s: float = 30.0) -> Any:
        """Poll `expression` (JSON-valued: `!!el` for an element) until truthy; TimeoutError names it, title, URL."""
        deadline = time.monotonic() + timeout_s
        last_error = ""
        while True:
            try:
                value = self.evaluate(expression, timeout_s=max(1.0, deadline - time.monotonic()))
                if value:
                    return value
                last_error = ""
            except RuntimeError as e:  # e.g. an element not there yet: keep polling, report it on timeout
                if self._crashed or self.browser._dead:
                    raise
                last_error = str(e)
            except TimeoutError:
                pass
            if time.monotonic() >= deadline:
                break
            time.sleep(0.1)
        try:
            where = self.evaluate("JSON.stringify([document.title, location.href])", timeout_s=5)
        except (RuntimeError, TimeoutError) as e:
            where = f"(page unreachable: {e})"
        raise TimeoutError(f"{expression!r} not truthy after {timeout_s:.0f} s; page [title, url] = {where}"
                           + (f"; last error: {last_error}" if last_error else ""))

    def click(self, element: str, timeout_s: float = 10.0) -> None:
        """Real mouse click at the centre of the element the JS expression `element` yields, once it is hittable."""
        # A real press/release (Input.dispatchMouseEvent), not el.click(): some widgets act on mousedown/pointerdown
        # (Radix tabs do), and a click on a covered element should fail as it would for a user.
        probe = f"""(() => {{
          const el = ({element});
          if (!el) return {{state: 'no such element'}};
          el.scrollIntoView({{block: 'center', inline: 'center'}});
          const r = el.getBoundingClientRect();
          if (r.width === 0 || r.height === 0) return {{state: 'not displayed'}};
          const x = r.left + r.width / 2, y = r.top + r.height / 2, hit = document.elementFromPoint(x, y);
          if (!hit || !(el === hit || el.contains(hit) || hit.contains(el)))
            return {{state: 'covered by ' + (hit ? hit.outerHTML.slice(0, 200) : 'nothing')}};
          return {{state: 'ok', x, y}};
        }})()"""
        deadline = time.monotonic() + timeout_s
        while True:
            at = self.evaluate(probe, timeout_s=max(1.0, deadline - time.monotonic()))
            if at["state"] == "ok":
                break
            if time.monotonic() >= deadline:
                raise TimeoutError(f"cannot click {element!r} within {timeout_s:.0f} s: {at['state']}")
            time.sleep(0.1)
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", {"type": kind, "x": at["x"], "y": at["y"], "button": "left",
                                                   "buttons": 1 if kind == "mousePressed" else 0, "clickCount": 1})

    def screenshot(self, path: str | Path, full_page: bool = True) -> Path:
        """Save a PNG screenshot (the whole scrollable page if `full_page`) and return its path."""
        import base64

        params: dict[str, Any] = {"format": "png"}
        if full_page:
            # captureBeyondViewport alone still clips to the viewport: pass the content size as the clip.
            size = self.send("Page.getLayoutMetrics").get("cssContentSize", {})
            width = max(1, min(int(size.get("width", self.browser.width)), 8192))
            height = max(1, min(int(size.get("height", self.browser.height)), 16384))
            params.update(captureBeyondViewport=True, clip={"x": 0, "y": 0, "width": width, "height": height,
                                                            "scale": 1})
        data = self.send("Page.captureScreenshot", params)["data"]
        path = Path(path)
        path.write_bytes(base64.b64decode(data))
        return path

    def images(self, selector: str = "img") -> list[dict]:
        """Each <img> matching `selector`: src (first 80 chars), complete, naturalWidth/Height, variance (or None)."""
        return self.evaluate(f"((imgs) => {_IMAGES_JS})(document.querySelectorAll({json.dumps(selector)}))")

    def close(self) -> None:
        """Close this tab."""
        try:
            self.browser.send("Target.closeTarget", {"targetId": self.target_id}, timeout_s=10)
        finally:
            with self.browser._lock:
                self.browser._pages.pop(self.session_id, None)


def _remote_object_text(obj: dict) -> str:
    """A console argument as text: primitives by value, objects by their description (e.g. an Error's stack)."""
    if "value" in obj:
        value = obj["value"]
        return value if isinstance(value, str) else json.dumps(value)
    preview = obj.get("preview")
    if preview and obj.get("subtype") != "error":  # {a: 1} rather than just "Object"
        props = ", ".join(f"{p['name']}: {p.get('value', p.get('type', '?'))}" for p in preview.get("properties", []))
        more = ", ..." if preview.get("overflow") else ""
        return f"{obj.get('description', '')} {{{props}{more}}}".strip()
    return obj.get("description") or obj.get("unserializableValue") or obj.get("type", "?")


def _exception_text(details: dict) -> str:
    """Runtime exceptionDetails as text: the exception's description (message + stack) or the summary text."""
    exc = details.get("exception") or {}
    text = exc.get("description") or (str(exc["value"]) if "value" in exc else "") or details.get("text", "")
    url = details.get("url")
    if url and url not in text:
        text += f" (at {url}:{details.get('lineNumber', 0) + 1})"
    return text


def _where(stack: dict | None) -> str:
    """ ' (at URL:LINE)' for the top frame of a console call, if any."""
    frames = (stack or {}).get("callFrames") or []
    if not frames or not frames[0].get("url"):
        return ""
    top = frames[0]
    return f" (at {top['url'][:200]}:{top.get('lineNumber', 0) + 1})"

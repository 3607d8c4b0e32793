"""Drive the MLflow UI (the React app `mlflow server` serves) to a run's artifact view in headless Chromium.

Worked out against MLflow 3.17: the run page is ``{tracking_uri}/#/experiments/{experiment_id}/runs/{run_id}``;
its "Artifacts" tab (a Radix tab: it acts on mousedown, hence real mouse clicks) switches to ``.../artifacts``.
The tree's rows carry ``data-testid="artifact-tree-node"`` and their name as text; a folder's children are
listed (after an ``artifacts/list?path=`` call) in a ``<ul>`` inside its ``<li>``. Clicking a PNG fetches
``get-artifact?path=...&run_uuid=...`` and previews it as ``<img alt="{path}" src="blob:...">``.
"""

from __future__ import annotations

import json
import time
import urllib.parse

from chromium import Browser

# JS helpers, prepended to each expression. node(name, root): the tree row named `name` under `root`, matched by
# text; if the tree has no data-testid rows (another MLflow version), the deepest element with exactly that text.
_JS = r"""
const __rows = (root) => Array.from((root || document).querySelectorAll('[data-testid="artifact-tree-node"]'));
const __node = (name, root) => {
  const rows = __rows(root);
  if (rows.length) return rows.find((e) => e.textContent.trim() === name) || null;
  const view = (root || document.querySelector('.mlflow-artifact-view') || document.body);
  return Array.from(view.querySelectorAll('*')).filter((e) => e.textContent.trim() === name).pop() || null;
};
const __folder = (path) => {  // the <li> of folder `path` ("a/b"), or null while any part of it is not listed
  let li = document;
  for (const part of path.split('/').filter(Boolean)) {
    const n = __children(li) && __node(part, __children(li));
    if (!n) return null;
    li = n.closest('li') || n.parentElement;
  }
  return li;
};
const __children = (li) => (li === document ? document : li.querySelector('ul'));  // null: folder not expanded
const __preview = (path) => {  // the preview <img> of `path`: its alt is the path (else the pane's, if it names path)
  const img = Array.from(document.querySelectorAll('img')).find((i) => i.getAttribute('alt') === path);
  if (img) return img;
  const pane = document.querySelector('.mlflow-artifact-right');
  return (pane && pane.innerText.includes(path) && pane.querySelector('img')) || null;
};
"""


class ArtifactViewResult(dict):
    """{name: preview info}, plus what the page showed: url, listed, console_errors, external_requests."""

    url: str
    listed: list[str]
    console_errors: list[str]
    external_requests: list[str]


def _js(body: str) -> str:
    return f"(() => {{ {_JS}\n return ({body}); }})()"


def artifact_view_images(page_factory: Browser, tracking_uri: str, experiment_id: str, run_id: str, folder: str,
                         names: list[str], timeout_s: float = 60, screenshot: str | None = None) -> dict[str, dict]:
    """Open the run's Artifacts tab, expand `folder`, click each of `names`; {name: its loaded preview <img> info}.

    Each info: src, naturalWidth, naturalHeight, variance (None if not computable), complete, fetched (the
    requests for that artifact). AssertionError names the missing names and the listed ones; TimeoutError if a
    step does not happen within `timeout_s` overall. The result also has `.url`, `.listed`, `.console_errors`
    (MLflow's own, reported and not judged here) and `.external_requests` (anything not from `tracking_uri`).
    """
    deadline = time.monotonic() + timeout_s

    def left() -> float:  # seconds left of the overall timeout (at least 1: each step gets a fair try)
        return max(1.0, deadline - time.monotonic())

    base = tracking_uri.rstrip("/")
    folder = folder.strip("/")
    page = page_factory.open(f"{base}/#/experiments/{experiment_id}/runs/{run_id}")
    try:
        tab = ("Array.from(document.querySelectorAll('[role=tab]')).find((e) => e.textContent.trim() === 'Artifacts')"
               " || null")
        page.click(tab, timeout_s=left())
        page.wait_for(_js("__rows().length > 0 || /No Artifacts Recorded/i.test(document.body.innerText)"), left())

        # Expand each level of `folder`. A click that lands while the app re-renders can be lost: click again
        # only while the folder has no child list at all (a second click on an expanded folder would close it).
        prefix = ""
        for part in folder.split("/") if folder else []:
            path = f"{prefix}/{part}".strip("/")
            q = json.dumps(path)
            page.wait_for(_js(f"!!__folder({q})"), left())
            while not page.evaluate(_js(f"!!__children(__folder({q}))")):
                page.click(_js(f"__node({json.dumps(part)}, __children(__folder({json.dumps(prefix)})))"),
                           timeout_s=left())
                try:
                    page.wait_for(_js(f"!!__children(__folder({q}))"), min(5.0, left()))
                except TimeoutError:
                    if time.monotonic() >= deadline:
                        raise
            # Listed once the loading spinner in its child list is gone.
            page.wait_for(_js(f"!__children(__folder({q})).querySelector('.mlflow-loading-spinner')"), left())
            prefix = path

        q = json.dumps(folder)
        listed_js = _js(f"__rows(__children(__folder({q}))).map((e) => e.textContent.trim())")
        present_js = _js(f"{json.dumps(names)}.every((n) => !!__node(n, __children(__folder({q}))))")
        try:  # the rows render right after the spinner goes: a short grace, not the whole timeout
            page.wait_for(present_js, min(3.0, left()))
        except TimeoutError:
            listed = page.evaluate(listed_js) or []
            missing = [n for n in names if n not in listed]
            text = page.evaluate("document.querySelector('.mlflow-artifact-view')?.innerText "
                                 "|| document.body.innerText.slice(0, 2000)")
            raise AssertionError(f"not listed in {folder or 'the root'!r}: {missing}; listed: {listed}; "
                                 f"artifact view text: {text!r}") from None
        listed = page.evaluate(listed_js) or []

        result = ArtifactViewResult()
        for name in names:
            path = f"{folder}/{name}".strip("/")
            q = json.dumps(path)
            # The app sets the new alt before the new blob: URL: wait for a src the pane did not show before the click.
            before = json.dumps(page.evaluate("Array.from(document.querySelectorAll('.mlflow-artifact-right img'))"
                                              ".map((i) => i.src)") or [])
            loaded = _js(f"(() => {{ const i = __preview({q}); return !!i && !{before}.includes(i.src) "
                         f"&& i.complete && i.naturalWidth > 0; }})()")
            try:
                # A click that lands while the tree re-renders can be lost (seen on a loaded machine): click
                # again until the pane shows this file; re-selecting the selected file changes nothing.
                while True:
                    page.click(_js(f"__node({json.dumps(name)}, __children(__folder({json.dumps(folder)})))"),
                               timeout_s=left())
                    try:
                        page.wait_for(loaded, min(8.0, left()))
                        break
                    except TimeoutError:
                        if time.monotonic() >= deadline:
                            raise
            except TimeoutError:
                state = page.evaluate(_js(f"(() => {{ const i = __preview({q}); return i && {{alt: i.alt, "
                                          f"src: i.src.slice(0, 120), complete: i.complete, "
                                          f"naturalWidth: i.naturalWidth}}; }})()"))
                pane = page.evaluate("document.querySelector('.mlflow-artifact-right')?.innerText || null")
                raise AssertionError(f"preview of {path!r} did not load in {timeout_s:.0f} s: img {state}; "
                                     f"preview pane text: {pane!r}; console errors: {page.console_errors}") from None
            info = (page.images(f"img[alt={json.dumps(path)}]") or page.images(".mlflow-artifact-right img"))[0]
            encoded = urllib.parse.quote(path, safe="")
            info["fetched"] = [u for u in page.requests if "artifact" in u and (encoded in u or path in u)]
            result[name] = info

        if screenshot:
            page.screenshot(screenshot)
        result.url = page.evaluate("location.href")
        result.listed = listed
        result.console_errors = list(page.console_errors)
        result.external_requests = [u for u in page.requests
                                    if not u.startswith((base + "/", "blob:", "data:", "about:"))]
        return result
    finally:
        page.close()

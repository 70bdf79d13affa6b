"""Check `make lab` the way a user meets it: the server starts, prints its URL, lists the project's
kernel, opens a notebook and runs it on that kernel, then shuts down cleanly.

    make lab-check            # what the Makefile runs: scripts/lab_check.py -- $(LAB_CMD)
    .venv/bin/python scripts/lab_check.py [--notebook training.ipynb] [--all-cells] -- CMD...

CMD is the Makefile's `lab` command line, expanded by the shell (so --allow-root and --no-browser
are the ones `make lab` would pass); this appends only a free port, its own token and no browser.
Then, over the REST API: GET /api/status (with the token only; the URL was printed), kernelspecs
(lists `glsgn`) and contents/<notebook> (kernelspec `glsgn`); POST /api/sessions starts a `glsgn`
kernel, which runs the notebook's `parameters` cell, then a cell importing glsgn and every module
the notebook imports and checking that the kernel is this .venv's Python (--all-cells: every code
cell, figures_dir set to a scratch folder; they read `make repro`'s outputs); DELETE the session
stops the kernel; POST /api/shutdown: the server exits with status 0. Cells run on the server's
kernel through jupyter_client and the connection file the server wrote in the Jupyter runtime dir
(it inherits our environment): the server's kernel websocket is the one part left unexercised.
Each check prints PASS or FAIL; the exit status is 1 if any failed.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from jupyter_client import BlockingKernelClient, find_connection_file

ROOT = Path(__file__).resolve().parent.parent
KERNEL = "glsgn"
FAILED: list[str] = []


def report(ok: bool, what: str, detail: object = "") -> bool:
    print(f"{'PASS' if ok else 'FAIL'}  {what}" + (f": {detail}" if detail else ""), flush=True)
    FAILED.extend([] if ok else [what])
    return ok


def cells_to_run(code: list[dict], all_cells: bool) -> list[tuple[str, str]]:
    """(label, source): the parameters cell, the import probe and, with `all_cells`, the rest."""
    params = next((c for c in code if "parameters" in c["metadata"].get("tags", [])), code[0])
    imports: dict[str, None] = {}  # the notebook's own, so the probe tracks what it really uses
    for cell in code:
        try:
            body = ast.parse(cell["source"]).body
        except SyntaxError:  # IPython magics and the like: not ours to run here
            continue
        nodes = [n for n in body if isinstance(n, ast.Import | ast.ImportFrom)]
        imports |= dict.fromkeys(map(ast.unparse, nodes))
    probe = (  # a kernel of another environment would pass every other check
        "import os, sys\nimport glsgn\n"
        f"assert os.path.realpath(sys.prefix) == {os.path.realpath(sys.prefix)!r}, sys.prefix\n"
        "print('kernel python', sys.executable, '\\nglsgn from', os.path.dirname(glsgn.__file__))\n"
        f"print('kernel cwd', os.getcwd())\n{''.join(i + chr(10) for i in imports)}"
        f"print('notebook imports ok: {len(imports)} statements')\n"
    )
    cells = [("parameters cell", params["source"]), ("import cell (glsgn, .venv's Python)", probe)]
    if all_cells:  # as papermill would: the figures go to a scratch folder, not reports/
        set_dir = f"figures_dir = {tempfile.mkdtemp(prefix='lab_check-figures-')!r}"
        cells.append((f"{set_dir} (parameter, as papermill sets)", set_dir))
        n = len(code)
        cells += [
            (f"code cell {i + 1}/{n}", c["source"]) for i, c in enumerate(code) if c is not params
        ]
    return cells


def output_text(c: dict) -> str:
    """What a stream, result, display or error message shows; nothing for the others."""
    if "ename" in c:
        return f"{c['ename']}: {c['evalue']}\n"
    if "data" in c:
        return c["data"].get("text/plain", "<display>") + "\n"
    return c.get("text", "")


def run_cells(kernel_id: str, cells: list[tuple[str, str]], timeout: float) -> None:
    kc = BlockingKernelClient()
    kc.load_connection_file(find_connection_file(f"kernel-{kernel_id}.json"))
    kc.allow_stdin = False  # a cell that asks for input fails instead of reading ours
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        for label, source in cells:
            out: list[str] = []
            try:
                hook = lambda msg, out=out: out.append(output_text(msg["content"]))  # noqa: E731
                reply = kc.execute_interactive(source, timeout=timeout, output_hook=hook)
                ok = reply["content"]["status"] == "ok"
            except TimeoutError:
                ok = False
                out.append(f"no reply in {timeout:.0f} s")
            report(ok, f"kernel '{KERNEL}' runs the {label}")
            print("".join(f"        {line}\n" for line in "".join(out).splitlines()[-12:]), end="")
    finally:
        kc.stop_channels()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--notebook", default="training.ipynb", help="under notebooks/ (the lab root)")
    ap.add_argument("--all-cells", action="store_true", help="run every code cell, not two")
    ap.add_argument("--start-timeout", type=float, default=90.0)
    ap.add_argument("--cell-timeout", type=float, default=300.0)
    ap.add_argument("cmd", nargs=argparse.REMAINDER, help="-- then the `make lab` command line")
    args = ap.parse_args()
    cmd, nb = args.cmd[args.cmd[:1] == ["--"] :], args.notebook
    if not cmd:
        ap.error("give the lab command after --, as `make lab-check` does")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port, token = s.getsockname()[1], secrets.token_hex(24)
    base = f"http://127.0.0.1:{port}"
    # jupyterlab 4 means jupyter_server 2, which reads the token from IdentityProvider.
    adds = [f"--port={port}", "--ServerApp.port_retries=0", "--ServerApp.open_browser=False"]
    print("lab command (as make lab):", " ".join(cmd))
    print("check adds:", *adds, "--IdentityProvider.token=<token>", flush=True)
    log = tempfile.NamedTemporaryFile("w+", prefix="lab_check-", suffix=".log", delete=False)
    server = [*cmd, *adds, f"--IdentityProvider.token={token}"]
    proc = subprocess.Popen(
        server, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
    )
    http = requests.Session()
    http.headers["Authorization"] = f"token {token}"

    def api(method: str, path: str, **kw):
        r = http.request(method, base + path, timeout=30, **kw)
        r.raise_for_status()
        return r.json() if r.content else None

    try:
        t0, status = time.monotonic(), None
        while status is None and proc.poll() is None and time.monotonic() - t0 < args.start_timeout:
            try:
                status = api("GET", "/api/status")
            except requests.ConnectionError:
                time.sleep(0.5)
        detail = f"{time.monotonic() - t0:.1f} s, {status or f'exit status {proc.poll()}'}"
        if not report(status is not None, "server answers GET /api/status with the token", detail):
            raise RuntimeError("the server never answered")
        printed = f"{base}/lab?token=" in Path(log.name).read_text(errors="replace")
        report(printed, "server prints the URL to open", f"{base}/lab?token=...")
        code = requests.get(base + "/api/status", timeout=10).status_code
        report(code == 403, "a request without the token is refused", f"HTTP {code}")
        specs = api("GET", "/api/kernelspecs")["kernelspecs"]
        report(KERNEL in specs, f"GET /api/kernelspecs lists '{KERNEL}'", sorted(specs))
        model = api("GET", f"/api/contents/{nb}?content=1")["content"]
        name = model["metadata"].get("kernelspec", {}).get("name")
        detail = f"{len(model['cells'])} cells, kernelspec {name!r}"
        report(name == KERNEL, f"GET /api/contents/{nb} opens it", detail)
        body = {"path": nb, "type": "notebook", "name": nb, "kernel": {"name": KERNEL}}
        sess = api("POST", "/api/sessions", json=body)
        kernel = sess["kernel"]
        report(kernel["name"] == KERNEL, f"POST /api/sessions starts a '{KERNEL}' kernel")
        code_cells = [c for c in model["cells"] if c["cell_type"] == "code"]
        run_cells(kernel["id"], cells_to_run(code_cells, args.all_cells), args.cell_timeout)
        api("DELETE", f"/api/sessions/{sess['id']}")
        alive = [k["id"] for k in api("GET", "/api/kernels")]
        report(kernel["id"] not in alive, "DELETE /api/sessions stops the kernel")
    except Exception as e:  # noqa: BLE001 -- a failed request is a failed check, with the log
        report(False, "the checks ran to the end", f"{type(e).__name__}: {e}")
        print("---- server log (end) ----\n" + Path(log.name).read_text(errors="replace")[-4000:])
    finally:
        if proc.poll() is None:  # as File > Shut Down does; a server that stays is killed
            with contextlib.suppress(requests.RequestException):  # the wait decides
                api("POST", "/api/shutdown")
            try:
                rc = proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                rc = "still running after 30 s"
            report(rc == 0, "POST /api/shutdown: the server exits cleanly", f"exit status {rc}")
        log.close()
        print(f"server log: {log.name}") if FAILED else os.unlink(log.name)
    why = f" ({'; '.join(FAILED)})" if FAILED else ""
    print(f"{'FAIL' if FAILED else 'PASS'}  lab check: {len(FAILED)} failed{why}", flush=True)
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())

"""Check `make lab` the way a user meets it: the server starts, prints its URL, lists the project's
kernel, opens a notebook and runs it on that kernel, then shuts down cleanly.

    make lab-check            # what the Makefile runs: scripts/lab_check.py -- $(LAB_CMD)
    .venv/bin/python scripts/lab_check.py [--notebook training.ipynb] [--all-cells] -- CMD...

CMD is the Makefile's `lab` command line, already expanded by the shell (so --allow-root and
--no-browser are the ones `make lab` would pass). This script appends only what a check needs: a
free port (no retries onto another), its own token, and no browser. Then, through the server's REST
API and kernel websocket, as JupyterLab's front end does:

  GET  /api/status                  the server answers, with the token
  GET  /api/kernelspecs             lists `glsgn`
  GET  /api/contents/<notebook>     the notebook opens, and its kernelspec is `glsgn`
  POST /api/sessions                a session for it starts a `glsgn` kernel
  WS   /api/kernels/<id>/channels   runs the notebook's `parameters` cell, then a cell importing
                                    glsgn and every module the notebook imports, and checking
                                    that the kernel is this .venv's Python
                                    (--all-cells: every code cell, with figures_dir set to a
                                    scratch folder; they read `make repro`'s outputs)
  POST /api/shutdown                the server exits with status 0

Each check prints PASS or FAIL; the exit status is 1 if any failed. Only the standard library and
tornado (jupyter_server's own dependency) are used.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KERNEL = "glsgn"
FAILED: list[str] = []


def report(ok: bool, what: str, detail: str = "") -> bool:
    print(f"{'PASS' if ok else 'FAIL'}  {what}" + (f": {detail}" if detail else ""), flush=True)
    if not ok:
        FAILED.append(what)
    return ok


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def token_flag(token: str) -> str:
    """jupyter_server 2 reads the token from IdentityProvider (ServerApp.token is deprecated)."""
    import jupyter_server

    major = int(jupyter_server.__version__.split(".")[0])
    return f"--IdentityProvider.token={token}" if major >= 2 else f"--ServerApp.token={token}"


def notebook_imports(code_cells: list[dict]) -> str:
    """The notebook's own top-level import statements, so the probe tracks what it really uses."""
    lines: list[str] = []
    for cell in code_cells:
        try:
            tree = ast.parse("".join(cell["source"]))
        except SyntaxError:  # IPython magics and the like: not ours to run here
            continue
        for node in tree.body:
            if isinstance(node, ast.Import | ast.ImportFrom):
                text = ast.unparse(node)
                if text not in lines:
                    lines.append(text)
    return "".join(line + "\n" for line in lines) + (
        f"print('notebook imports ok: {len(lines)} statements')\n" if lines else ""
    )


class Server:
    def __init__(self, base: str, token: str):
        self.base, self.token = base, token

    def request(self, method: str, path: str, body=None, timeout: float = 30):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Authorization", f"token {self.token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
            return r.status, (json.loads(raw) if raw else None)


def message(session: str, msg_type: str, content: dict) -> dict:
    return {
        "header": {
            "msg_id": uuid.uuid4().hex,
            "msg_type": msg_type,
            "session": session,
            "username": "lab_check",
            "version": "5.3",
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
        "parent_header": {},
        "metadata": {},
        "content": content,
        "channel": "shell",
        "buffers": [],
    }


async def run_cells(ws_url: str, token: str, cells: list[tuple[str, str]], timeout: float):
    """Runs each (label, source) on the kernel behind ws_url; returns [(label, ok, text)]."""
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    ws = await websocket_connect(HTTPRequest(ws_url, headers={"Authorization": f"token {token}"}))
    session, results = uuid.uuid4().hex, []
    try:
        for label, source in cells:
            ok, text = await execute(ws, session, source, timeout)
            results.append((label, ok, text))
    finally:
        ws.close()
    return results


async def execute(ws, session: str, source: str, timeout: float) -> tuple[bool, str]:
    """Run one cell; -> (it replied ok, what it printed). The cell is done only when both its
    execute_reply and the kernel's return to idle have come: output may arrive in between."""
    msg = message(
        session,
        "execute_request",
        {
            "code": source,
            "silent": False,
            "store_history": True,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": True,
        },
    )
    ws.write_message(json.dumps(msg))
    out, status, idle, deadline = [], None, False, time.monotonic() + timeout
    while status is None or not idle:
        left = deadline - time.monotonic()
        if left <= 0:
            out.append(f"no reply in {timeout:.0f} s")
            break
        raw = await asyncio.wait_for(ws.read_message(), left)
        if raw is None:
            out.append("websocket closed")
            break
        reply = json.loads(raw)
        if reply.get("parent_header", {}).get("msg_id") != msg["header"]["msg_id"]:
            continue  # another request's (the kernel's startup status, say)
        kind, content = reply["header"]["msg_type"], reply["content"]
        if kind == "stream":
            out.append(content["text"])
        elif kind in ("execute_result", "display_data"):
            out.append(content["data"].get("text/plain", "<display>") + "\n")
        elif kind == "error":
            out.append(f"{content['ename']}: {content['evalue']}\n")
        elif kind == "execute_reply":
            status = content["status"]
        elif kind == "status" and content["execution_state"] == "idle":
            idle = True
    return status == "ok", "".join(out).strip()


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--notebook", default="training.ipynb", help="under notebooks/ (the lab root)")
    ap.add_argument("--all-cells", action="store_true", help="run every code cell, not two")
    ap.add_argument("--start-timeout", type=float, default=90.0)
    ap.add_argument("--cell-timeout", type=float, default=300.0)
    ap.add_argument("cmd", nargs=argparse.REMAINDER, help="-- then the `make lab` command line")
    args = ap.parse_args()
    args.cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not args.cmd:
        ap.error("give the lab command after --, as `make lab-check` does")
    return args


def lab_command(cmd: list[str], port: int, token: str) -> list[str]:
    """`cmd` plus only what a check needs, both printed so a failure can be replayed by hand."""
    print("lab command (as make lab):", " ".join(cmd), flush=True)
    print(
        f"check adds: --port={port} --ServerApp.port_retries=0 {token_flag('<token>')} "
        "--ServerApp.open_browser=False",
        flush=True,
    )
    return [
        *cmd,
        f"--port={port}",
        "--ServerApp.port_retries=0",
        token_flag(token),
        "--ServerApp.open_browser=False",
    ]


def log_text(path: str) -> str:
    return Path(path).read_text(errors="replace")


def wait_for_status(
    server: Server, proc: subprocess.Popen, timeout: float
) -> tuple[dict | None, str]:
    """GET /api/status until it answers, the server exits or `timeout` s pass; -> (status, the
    last connection error)."""
    t0, why = time.monotonic(), ""
    while time.monotonic() - t0 < timeout and proc.poll() is None:
        try:
            return server.request("GET", "/api/status", timeout=5)[1], why
        except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
            why = str(e)
            time.sleep(0.5)
    return None, why


def check_server(server: Server, proc: subprocess.Popen, log_path: str, timeout: float) -> bool:
    """1. The server answers (as root this is where it used to stop), prints the URL to open and
    refuses a request without the token. False: it never answered, nothing else can be checked."""
    t0 = time.monotonic()
    status, why = wait_for_status(server, proc, timeout)
    if status:
        detail = f"{time.monotonic() - t0:.1f} s, {status}"
    else:
        detail = f"exit status {proc.poll()}" if proc.poll() is not None else why
    if not report(status is not None, "server answers GET /api/status with the token", detail):
        print("---- server log ----\n" + log_text(log_path)[-4000:])
        return False
    report(
        f"{server.base}/lab?token=" in log_text(log_path),
        "server prints the URL to open",
        f"{server.base}/lab?token=...",
    )
    try:
        urllib.request.urlopen(server.base + "/api/status", timeout=5).close()
        report(False, "a request without the token is refused", "it was answered")
    except urllib.error.HTTPError as e:
        report(e.code == 403, "a request without the token is refused", f"HTTP {e.code}")
    return True


def check_kernelspec(server: Server) -> None:
    """2. The project's kernel is listed."""
    specs = server.request("GET", "/api/kernelspecs")[1]
    names = sorted(specs["kernelspecs"])
    shown = specs["kernelspecs"].get(KERNEL, {}).get("spec", {}).get("display_name")
    report(
        KERNEL in names, f"GET /api/kernelspecs lists '{KERNEL}'", f"{names}; {KERNEL}: {shown!r}"
    )


def open_notebook(server: Server, notebook: str) -> list[dict]:
    """3. The notebook opens, and asks for that kernel; -> its code cells."""
    nb = server.request("GET", f"/api/contents/{notebook}?content=1")[1]
    ks = nb["content"]["metadata"].get("kernelspec", {})
    report(
        nb["type"] == "notebook" and ks.get("name") == KERNEL,
        f"GET /api/contents/{notebook} opens it",
        f"{len(nb['content']['cells'])} cells, kernelspec {ks.get('name')!r}",
    )
    return [c for c in nb["content"]["cells"] if c["cell_type"] == "code"]


def start_session(server: Server, notebook: str) -> dict:
    """4. A session for it, as opening it in JupyterLab makes, on the glsgn kernel."""
    _, sess = server.request(
        "POST",
        "/api/sessions",
        {"path": notebook, "type": "notebook", "name": notebook, "kernel": {"name": KERNEL}},
    )
    kernel = sess["kernel"]
    report(kernel["name"] == KERNEL, f"POST /api/sessions starts a '{KERNEL}' kernel", kernel["id"])
    return sess


def import_probe(code: list[dict]) -> str:
    """A cell that fails unless the kernel can import glsgn and everything the notebook imports,
    and is the Python this check runs on: a kernel of another environment would pass the rest."""
    probe = (
        "import os, sys\n"
        "import glsgn\n"
        f"assert os.path.realpath(sys.prefix) == {os.path.realpath(sys.prefix)!r}, sys.prefix\n"
        "print('kernel python', sys.executable)\n"
        "print('glsgn from', os.path.dirname(glsgn.__file__))\n"
        "print('kernel cwd', os.getcwd())\n"
    )
    return probe + notebook_imports(code)


def cells_to_run(code: list[dict], all_cells: bool) -> list[tuple[str, str]]:
    """(label, source) of the parameters cell, the import probe and, with `all_cells`, the rest."""
    params = next(
        (c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])),
        code[0] if code else None,
    )
    cells = [("parameters cell", "".join(params["source"]))] if params else []
    cells.append(
        ("import cell (glsgn, the notebook's imports, .venv's Python)", import_probe(code))
    )
    if all_cells:  # as papermill would: the figures go to a scratch folder, not reports/
        scratch = tempfile.mkdtemp(prefix="lab_check-figures-")
        cells.append(
            (
                f"figures_dir = {scratch!r} (parameter, as papermill sets)",
                f"figures_dir = {scratch!r}",
            )
        )
        cells += [
            (f"code cell {i + 1}/{len(code)}", "".join(c["source"]))
            for i, c in enumerate(code)
            if c is not params
        ]
    return cells


def check_cells(
    port: int, token: str, kernel_id: str, cells: list[tuple[str, str]], timeout: float
) -> None:
    """Run the cells over the kernel's websocket, as the front end does; each is a check."""
    ws_url = f"ws://127.0.0.1:{port}/api/kernels/{kernel_id}/channels?session_id={uuid.uuid4().hex}"
    try:
        results = asyncio.run(run_cells(ws_url, token, cells, timeout))
    except Exception as e:  # noqa: BLE001
        results = [("kernel websocket", False, f"{type(e).__name__}: {e}")]
    for label, ok, text in results:
        report(ok, f"kernel '{KERNEL}' runs the {label}")
        for line in text.splitlines()[-12:]:
            print("        " + line)
    if len(results) < len(cells):
        report(False, "every cell ran", f"{len(results)} of {len(cells)}")


def check_session_stops(server: Server, sess: dict) -> None:
    """Closing the notebook's session must not leave its kernel running."""
    server.request("DELETE", f"/api/sessions/{sess['id']}")
    kernels = server.request("GET", "/api/kernels")[1]
    report(
        all(k["id"] != sess["kernel"]["id"] for k in kernels),
        "DELETE /api/sessions stops the kernel",
    )


def check_shutdown(server: Server, proc: subprocess.Popen) -> None:
    """5. Clean shutdown through the API, as JupyterLab's File > Shut Down does; a server that
    does not exit is killed, so that no check leaves one running."""
    try:
        server.request("POST", "/api/shutdown", timeout=10)
    except Exception:  # noqa: BLE001 -- the wait below decides
        pass
    try:
        rc = proc.wait(30)
        report(rc == 0, "POST /api/shutdown: the server exits cleanly", f"exit status {rc}")
    except subprocess.TimeoutExpired:
        report(False, "POST /api/shutdown: the server exits cleanly", "still running after 30 s")
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def main() -> int:
    args = parse_args()
    port, token = free_port(), secrets.token_hex(24)
    full = lab_command(args.cmd, port, token)
    log = tempfile.NamedTemporaryFile("w+", prefix="lab_check-", suffix=".log", delete=False)
    proc = subprocess.Popen(
        full,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    server = Server(f"http://127.0.0.1:{port}", token)
    try:
        if not check_server(server, proc, log.name, args.start_timeout):
            return 1
        check_kernelspec(server)
        code = open_notebook(server, args.notebook)
        sess = start_session(server, args.notebook)
        check_cells(
            port, token, sess["kernel"]["id"], cells_to_run(code, args.all_cells), args.cell_timeout
        )
        check_session_stops(server, sess)
    except Exception as e:  # noqa: BLE001 -- a failed request is a failed check, with the log
        report(False, "the checks ran to the end", f"{type(e).__name__}: {e}")
        print("---- server log (end) ----\n" + log_text(log.name)[-4000:])
    finally:
        if proc.poll() is None:
            check_shutdown(server, proc)
        log.close()
        if FAILED:  # kept for reading
            print(f"server log: {log.name}")
        else:
            os.unlink(log.name)

    print(
        f"{'FAIL' if FAILED else 'PASS'}  lab check: {len(FAILED)} failed"
        + (f" ({'; '.join(FAILED)})" if FAILED else ""),
        flush=True,
    )
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())

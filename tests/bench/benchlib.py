"""Shared by the benchmark scripts: a fresh `runner serve`, a JSON client,
percentiles, and the count of sandbox containers (standard library only)."""
import json
import os
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# RUNNER_BIN runs another build (e.g. a baseline copied aside) instead.
RUNNER = os.environ.get("RUNNER_BIN") or os.path.join(ROOT, "target", "release", "runner")


def build(languages):
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "runner"], cwd=ROOT, check=True)
    args = [RUNNER, "images", "build"]
    for lang in languages:
        args += ["-l", lang]
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)


def image_of(language):
    out = subprocess.run([RUNNER, "images", "list"], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        f = line.split()
        if f and f[0] == language:
            return f[2]
    raise SystemExit(f"no image for {language}")


def managed_containers():
    out = subprocess.run(["docker", "ps", "-aq", "--filter", "label=io.runner.managed=true"],
                         capture_output=True, text=True, check=True).stdout
    return len(out.split())


def percentile(values, p):
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


class Server:
    """`runner serve` on a fresh database with one developer key; samples its
    RSS while it runs."""

    def __init__(self, config="", work=None, key=None):
        """`work` and `key`: restart on the database of an earlier Server
        (stopped with keep=True) instead of a fresh one."""
        self.work = work or tempfile.mkdtemp(prefix="runner-bench-")
        db = self.db = os.path.join(self.work, "runner.db")
        if key is None:
            subprocess.run([RUNNER, "admin", "tenant", "create", "bench", "--database", db], check=True,
                           capture_output=True)
            key = subprocess.run([RUNNER, "admin", "key", "create", "--tenant", "bench", "--role", "developer",
                                  "--database", db], check=True, capture_output=True, text=True).stdout.strip()
        self.key = key
        cfg = os.path.join(self.work, "runner.toml")
        with open(cfg, "w") as f:
            # The caller's lines come before our table: they may hold top-level keys.
            f.write(f'listen = "127.0.0.1:0"\ndatabase = "{db}"\nwait_timeout_ms = 300000\nqueue_capacity = 100000\n'
                    f'{config}\n[rate_limit]\nper_key = 1000000\nper_ip = 1000000\n')
        self.proc = subprocess.Popen([RUNNER, "serve", "--config", cfg], stdout=subprocess.PIPE, text=True)
        self.addr = None
        for line in self.proc.stdout:
            entry = json.loads(line)
            if entry.get("fields", {}).get("message") == "listening":
                self.addr = entry["fields"]["addr"]
                break
        threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True).start()
        self.max_rss_kib = 0
        threading.Thread(target=self._sample_rss, daemon=True).start()

    def peak_rss_kib(self):
        """The kernel's high-water mark of the server's resident memory."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        return 0

    def _sample_rss(self):
        while self.proc.poll() is None:
            try:
                with open(f"/proc/{self.proc.pid}/status") as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            self.max_rss_kib = max(self.max_rss_kib, int(line.split()[1]))
            except OSError:
                return
            time.sleep(0.1)

    def request(self, method, path, body=None, timeout=300, key=None, headers=None, raw=False):
        """(status, JSON body, headers); with raw=True the body's bytes."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"http://{self.addr}{path}", data=data, method=method)
        req.add_header("Authorization", f"Bearer {key or self.key}")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                out = r.read()
                return r.status, out if raw else json.loads(out or b"null"), r.headers
        except urllib.error.HTTPError as e:
            out = e.read()
            return e.code, out if raw else json.loads(out or b"null"), e.headers

    def metrics(self):
        with urllib.request.urlopen(f"http://{self.addr}/metrics") as r:
            return r.read().decode()

    def wait_pool_full(self, timeout=180):
        """Waits until every pool reports as many ready containers as before
        the last change settled (the gauges stop rising)."""
        deadline = time.monotonic() + timeout
        last, stable = None, 0
        while time.monotonic() < deadline:
            ready = [l for l in self.metrics().splitlines() if l.startswith("runner_pool_ready{")]
            stable = stable + 1 if ready == last else 0
            last = ready
            if stable >= 10:
                return
            time.sleep(0.2)

    def stop(self, keep=False):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=120)
        if not keep:
            subprocess.run(["rm", "-rf", self.work])

#!/usr/bin/env python3
"""Workflow jobs through `runner serve` against `docker run --rm`.

Starts a fresh server (Docker backend), registers a local git repository
made here, and delivers signed GitHub push webhooks. Measures, interleaved
with the baseline:

- webhook to first job start: from the POST to the job's `started_at`;
- per-job overhead: a one-job workflow running one script (its end-to-end
  job time, set-up step included) against `docker run --rm` of the same job
  image running the same script under the same limits (no network,
  read-only root, tmpfs /work, non-root);
- peak server RSS while 20 jobs run (one push of a 20-cell matrix).

    tests/bench/workflow-vs-docker-run.py [--rounds N]

Prints medians and the ratio; run on a quiet machine, compare ratios.
"""
import argparse
import hashlib
import hmac
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402

SCRIPT = "echo hello from the job; python3 -c 'print(2 + 2)'"


def git(repo, *args):
    subprocess.run(["git", "-C", repo, "-c", "user.name=b", "-c", "user.email=b@example.org", *args],
                   check=True, capture_output=True)


def make_repo(workflow):
    repo = tempfile.mkdtemp(prefix="runner-bench-repo-")
    git(repo, "init", "-q", "-b", "main")
    os.makedirs(os.path.join(repo, ".github/workflows"))
    with open(os.path.join(repo, ".github/workflows/ci.yml"), "w") as f:
        f.write(workflow)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "bench")
    sha = subprocess.run(["git", "-C", repo, "rev-parse", "HEAD"], capture_output=True, text=True,
                         check=True).stdout.strip()
    return repo, sha


def job_image():
    out = subprocess.run([benchlib.RUNNER, "images", "list"], capture_output=True, text=True, check=True).stdout
    del out
    tags = subprocess.run(["docker", "images", "--format", "{{.Repository}}:{{.Tag}}", "runner-job/debian"],
                          capture_output=True, text=True, check=True).stdout.split()
    if not tags:
        raise SystemExit("no runner-job/debian image: run `runner images build --job debian`")
    return sorted(tags)[-1]


def deliver(server, repo_id, secret, sha):
    body = json.dumps({
        "ref": "refs/heads/main", "before": "0" * 40, "after": sha, "created": True, "deleted": False,
        "forced": False, "repository": {"full_name": "bench/app", "clone_url": "https://example.org/b.git"},
        "head_commit": {"id": sha, "message": "b", "added": [], "removed": [], "modified": []}, "commits": [],
    }).encode()
    sig = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    import urllib.request
    req = urllib.request.Request(f"http://{server.addr}/v1/hooks/github?repo={repo_id}", data=body, method="POST")
    for k, v in {"Content-Type": "application/json", "X-GitHub-Event": "push",
                 "X-GitHub-Delivery": str(uuid.uuid4()), "X-Hub-Signature-256": sig}.items():
        req.add_header(k, v)
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())["id"]


def wait_finished(server, trigger, timeout=600):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _, t, _ = server.request("GET", f"/v1/triggers/{trigger}")
        runs = t.get("runs") or []
        if runs:
            _, r, _ = server.request("GET", f"/v1/workflow-runs/{runs[0]}")
            if r["state"] not in ("queued", "running"):
                return r
        time.sleep(0.05)
    raise SystemExit(f"trigger {trigger} did not finish")


def parse_time(text):
    from datetime import datetime
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def docker_run(image):
    t0 = time.monotonic()
    subprocess.run(["docker", "run", "--rm", "--network", "none", "--read-only", "--user", "10001:10001",
                    "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--memory", "2g",
                    "--pids-limit", "1024", "--cpus", "2", "--tmpfs", "/work:exec,size=2g", "--tmpfs", "/tmp",
                    "--workdir", "/work", "--entrypoint", "bash", image, "-c", SCRIPT],
                   check=True, capture_output=True)
    return time.monotonic() - t0


def job_containers():
    """Managed containers that are not idle warm-pool ones."""
    out = subprocess.run(["docker", "ps", "-a", "--filter", "label=io.runner.managed=true",
                          "--format", '{{.Label "io.runner.pool"}}'],
                         capture_output=True, text=True, check=True).stdout
    return sum(1 for line in out.splitlines() if not line.strip())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "runner"], cwd=benchlib.ROOT, check=True)
    subprocess.run([benchlib.RUNNER, "images", "build", "--job", "debian"], check=True, stdout=subprocess.DEVNULL)
    image = job_image()
    one, sha1 = make_repo(f"on: push\njobs:\n  one:\n    runs-on: debian\n    steps:\n      - run: {SCRIPT}\n")
    grid, sha20 = make_repo("on: push\njobs:\n  grid:\n    runs-on: debian\n    strategy:\n      max-parallel: 20\n"
                            "      matrix:\n        n: [" + ", ".join(str(i) for i in range(20)) + "]\n"
                            "    steps:\n      - run: sleep 5; echo cell ${{ matrix.n }}\n")
    server = benchlib.Server(config="[workflows]\nconcurrency = 2\njobs_per_run = 20\n")
    admin = subprocess.run([benchlib.RUNNER, "admin", "key", "create", "--tenant", "bench", "--role", "admin",
                            "--database", server.db], check=True, capture_output=True, text=True).stdout.strip()
    repos = {}
    for name, path in [("bench/one", one), ("bench/grid", grid)]:
        status, r, _ = server.request("POST", "/v1/repos", {"name": name, "url": f"file://{path}"}, key=admin)
        assert status == 201, r
        repos[name] = (r["id"], r["webhook_secret"])
    # Warm the git cache and the image.
    wait_finished(server, deliver(server, *repos["bench/one"], sha1))
    docker_run(image)
    starts, jobs, dockers = [], [], []
    for _ in range(args.rounds):
        t0 = time.time()
        trigger = deliver(server, *repos["bench/one"], sha1)
        run = wait_finished(server, trigger)
        assert run["state"] == "success", run
        job = run["jobs"][0]
        starts.append(parse_time(job["started_at"]) - t0)
        jobs.append(parse_time(job["finished_at"]) - parse_time(job["started_at"]))
        dockers.append(docker_run(image))
    med = statistics.median
    print(f"webhook to first job start: median {med(starts) * 1000:.0f} ms over {len(starts)} pushes")
    print(f"job (set-up + one script step): median {med(jobs) * 1000:.0f} ms;"
          f" docker run --rm of the same script: median {med(dockers) * 1000:.0f} ms;"
          f" ratio {med(jobs) / med(dockers):.2f}")
    before = server.peak_rss_kib()
    t0 = time.monotonic()
    run = wait_finished(server, deliver(server, *repos["bench/grid"], sha20))
    print(f"20 jobs at once (a 20-cell matrix, 5 s each): {run['state']} in {time.monotonic() - t0:.1f} s;"
          f" server peak RSS {server.max_rss_kib / 1024:.1f} MiB (before: {before / 1024:.1f} MiB)")
    # Job sandboxes are removed as each job ends, in the background: give
    # the removals a moment before counting what is left.
    # The warm pool's idle containers (learners' languages) are not jobs'.
    t_end = time.monotonic()
    left = job_containers()
    while left and time.monotonic() - t_end < 60:
        time.sleep(0.5)
        left = job_containers()
    print(f"job containers left: {left} ({time.monotonic() - t_end:.1f} s after the run ended;"
          f" {benchlib.managed_containers() - left} idle warm-pool containers aside)")
    server.stop()


if __name__ == "__main__":
    main()

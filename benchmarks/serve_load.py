"""``amnet serve`` under load: concurrent clients over loopback, a share of them malformed, a few slow.

Starts the real command (``amnet serve``, in a subprocess, its log in a file) on a small model, then
runs ``--clients`` keep-alive clients for ``--seconds`` (after an uncounted ``--warmup``), each sending
one request after another: searches by gallery id, uploads of gallery images (base64 JSON, as the page
sends them) and now and then a large upload (a ~1 MB photo-sized JPEG). A ``--malformed`` share of the
requests is bad on purpose, one of four kinds in turn: broken JSON, an unknown attribute, bytes that
are not an image, a body over the upload limit (only its first 16 KiB are sent; the answer must come
from ``Content-Length`` alone). Beside them run ``--slow`` slow clients, in turn: a slow reader (a
search whose answer it reads at one byte a second), a slow uploader (a large upload sent at
``--slow-rate`` bytes a second) and a slowloris (request headers at one byte a second, never finished).

Prints throughput, p50 / p99 latency of the valid requests, every outcome by kind (status codes,
connections refused or reset, client timeouts), what happened to the slow clients, the server's RSS
after the warm-up and at the end, its thread count and the ERROR lines in its log, then the goals
(no refused or failed connection, no 5xx for a valid request, every malformed request 4xx, p99 at most
5x p50, RSS growth at most 10 %) and a JSON line. Client and server share the machine's CPUs (the
clients are one asyncio thread).

Without ``--model`` it builds an untrained AMNet at the default architecture (64 px, Q = 256) on a
synthetic split in a temporary folder, as ``search_latency.py`` does: weights do not change the cost.
``--url`` measures a server that is already running (``--pid`` gives its RSS).

    .venv/bin/python benchmarks/serve_load.py --clients 64 --seconds 60 --malformed 0.25 --slow 4
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import itertools
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
VALID = (("gallery", 0.6), ("upload", 0.35), ("large upload", 0.05))
MALFORMED = ("bad json", "unknown attribute", "not an image", "oversize")
SLOW = ("slow reader", "slow uploader", "slowloris")
CLIENT_TIMEOUT = 60.0  # a normal client gives up on an answer after this long ("timeout")


# ------------------------------------------------------------------------------------------ the server

def start_server(args: argparse.Namespace, tmp: str) -> tuple[subprocess.Popen, str, Path]:
    """(process, base URL, log file) of ``amnet serve`` on a free port, once it listens."""
    model, gallery, features = args.model, args.gallery, args.features
    if not model:
        sys.path.insert(0, str(HERE))
        from search_latency import build_untrained

        from amnet.config import ModelConfig

        print(f"building an untrained AMNet on {args.num_images} synthetic images (gallery {args.gallery_size}) ...",
              flush=True)
        model, gallery = build_untrained(tmp, args.num_images, args.gallery_size, ModelConfig())
    cmd = [sys.executable, "-c", "from amnet.cli import main; raise SystemExit(main())", "serve", "--model", model,
           "--port", "0", *(["--gallery", gallery] if gallery else []), *(["--features", features] if features else []),
           *args.serve_args.split()]
    log_path = Path(tmp) / "serve.log"
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log_path.open("w"), text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            raise SystemExit(f"amnet serve exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        if match := re.search(r"open (http://\S+?)/ ", line):
            return proc, match.group(1), log_path
    proc.kill()
    raise SystemExit("amnet serve did not start within 300 s")


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM (bytes), Threads and open file descriptors (FDs) of a process, from /proc (empty
    when unreadable)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
        out = {"FDs": len(os.listdir(f"/proc/{pid}/fd"))}
    except OSError:
        return {}
    for key in ("VmRSS", "VmHWM", "Threads"):
        if m := re.search(rf"^{key}:\s+(\d+)", text, re.M):
            out[key] = int(m.group(1)) * (1024 if key != "Threads" else 1)
    return out


# ------------------------------------------------------------------------------------------ requests

def post(path: str, body: bytes, host: str, extra: str = "") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n{extra}\r\n").encode() + body


def large_jpeg(width: int = 1600, height: int = 1200) -> bytes:
    """A photo-sized JPEG (smooth gradient + noise, about 1 MB): a large but valid upload."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 // width, y * 255 // height, (x + y) * 255 // (width + height)], -1)
    pixels = np.clip(base + rng.normal(0, 24, base.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=85)
    return buf.getvalue()


@dataclass
class Workload:
    """Prepared request bytes by kind (built once: the clients only pick and send)."""

    host: str
    max_body: int
    requests: dict[str, list[bytes]] = field(default_factory=dict)


def prepare(base: str, n: int = 64, seed: int = 0) -> Workload:
    """Requests from the server's own vocabulary and gallery (GET /api/vocab, /api/gallery, /img/ID)."""
    host = base.split("//", 1)[1]
    vocab = json.loads(urllib.request.urlopen(f"{base}/api/vocab", timeout=60).read())
    items = json.loads(urllib.request.urlopen(f"{base}/api/gallery?n={n}&seed={seed}", timeout=60).read())["items"]
    ids = [i["image_id"] for i in items]
    images = [urllib.request.urlopen(f"{base}/img/{i}", timeout=60).read() for i in ids[:16]]
    rng = random.Random(seed)
    attrs = vocab["attributes"]

    def changes() -> dict[str, str]:
        return {a["name"]: rng.choice(a["values"]) for a in rng.sample(attrs, rng.randint(0, min(2, len(attrs))))}

    def search(body: dict) -> bytes:
        return post("/api/search", json.dumps(body).encode(), host)

    big = base64.b64encode(large_jpeg()).decode()
    limit = 5 * 2**20  # amnet serve's default --max-upload-mb; an oversize body claims more than its JSON limit
    oversize = (f"POST /api/search HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {limit * 2}\r\n\r\n").encode() + b'{"upload": "' + b"A" * 16_384
    w = Workload(host, limit)
    w.requests = {
        "gallery": [search({"gallery_id": rng.choice(ids), "changes": changes(), "k": 20}) for _ in range(n)],
        "upload": [search({"upload": base64.b64encode(rng.choice(images)).decode(), "changes": changes(), "k": 20})
                   for _ in range(n)],
        "large upload": [search({"upload": "data:image/jpeg;base64," + big, "changes": changes(), "k": 20})],
        "bad json": [post("/api/search", b'{"gallery_id": "' + i.encode() + b'", "k": ', host) for i in ids[:8]],
        "unknown attribute": [search({"gallery_id": i, "changes": {"sheen": "matte"}}) for i in ids[:8]],
        "not an image": [search({"upload": base64.b64encode(b"GIF89a" + os.urandom(600)).decode()}),
                         search({"upload": base64.b64encode(images[0][:200]).decode()})],
        "oversize": [oversize],
        "slow reader": [search({"gallery_id": i, "changes": changes(), "k": 100}) for i in ids[:8]],
        "slow uploader": [search({"upload": big})],
    }
    return w


# ------------------------------------------------------------------------------------------ clients

@dataclass
class Stats:
    """Outcomes by kind, latencies of valid 200s, what the slow clients saw."""

    outcomes: Counter = field(default_factory=Counter)  # (kind, outcome) -> count, measured window
    warmup: Counter = field(default_factory=Counter)  # (kind, outcome) -> count during the warm-up
    late: Counter = field(default_factory=Counter)  # (kind, outcome) -> count, ended after the window
    latencies: list[tuple[str, float]] = field(default_factory=list)  # (kind, seconds) of valid 200s
    slow: Counter = field(default_factory=Counter)  # (slow kind, outcome) -> count
    counting: bool = False


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    line = await reader.readline()
    if not line:
        raise ConnectionResetError("closed before the response")
    status = int(line.split()[1])
    headers = {}
    while (h := await reader.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = h.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", 0)))
    return status, headers, body


def outcome_of(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, (ConnectionError, asyncio.IncompleteReadError)):
        return "connection reset/closed"
    if isinstance(exc, asyncio.TimeoutError):
        return "client timeout"
    return f"error {type(exc).__name__}"


async def client(w: Workload, stats: Stats, host: str, port: int, end: float, malformed: float, seed: int,
                 fresh: bool) -> None:
    """One client: request after request until ``end`` on one keep-alive connection (reconnecting when
    the server closes it), or with ``fresh`` a new connection for each request, as curl or urllib do."""
    rng = random.Random(seed)
    cycle = itertools.cycle(MALFORMED[seed % len(MALFORMED):] + MALFORMED[:seed % len(MALFORMED)])
    kinds, weights = zip(*VALID, strict=True)
    conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    while time.monotonic() < end:
        kind = next(cycle) if rng.random() < malformed else rng.choices(kinds, weights)[0]
        data = rng.choice(w.requests[kind])
        start = time.perf_counter()
        try:
            if conn is None:
                conn = await asyncio.open_connection(host, port)
            conn[1].write(data)
            await conn[1].drain()
            status, headers, body = await asyncio.wait_for(read_response(conn[0]), CLIENT_TIMEOUT)
            took = time.perf_counter() - start
            if fresh or headers.get("connection", "").lower() == "close":
                conn[1].close()
                conn = None
            outcome = str(status)
            if status == 503 and "retry-after" not in headers:
                outcome = "503 without Retry-After"
            if 400 <= status < 500 and "error" not in json.loads(body or b"{}"):
                outcome = f"{status} without a message"
            if stats.counting and status == 200 and kind in kinds and time.monotonic() <= end:
                stats.latencies.append((kind, took))
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
            outcome = outcome_of(exc)
            if conn is not None:
                conn[1].close()
            conn = None
        tally = stats.late if time.monotonic() > end else stats.outcomes if stats.counting else stats.warmup
        tally[(kind, outcome)] += 1
    if conn is not None:
        conn[1].close()


async def slow_client(w: Workload, stats: Stats, host: str, port: int, end: float, kind: str, rate: int) -> None:
    """One slow client of ``kind``, over and over until ``end``; records how each attempt ended."""
    while time.monotonic() < end:
        start = time.monotonic()
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError as exc:
            stats.slow[(kind, outcome_of(exc))] += 1
            await asyncio.sleep(1)
            continue
        try:
            outcome = await _slow_attempt(w, reader, writer, end, kind, rate)
        except (OSError, asyncio.IncompleteReadError) as exc:
            outcome = outcome_of(exc)
        finally:
            writer.close()
        stats.slow[(kind, f"{outcome} after {round(time.monotonic() - start):.0f} s")] += 1


async def _slow_attempt(w: Workload, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, end: float,
                        kind: str, rate: int) -> str:
    if kind == "slow reader":
        writer.write(w.requests[kind][0])
        await writer.drain()
        got = 0
        while time.monotonic() < end:
            if not await reader.read(1):
                return f"closed by the server, {got} bytes read"
            got += 1
            await asyncio.sleep(1)
        return f"still open at the end, {got} bytes read"
    if kind == "slowloris":
        data = f"POST /api/search HTTP/1.1\r\nHost: {w.host}\r\nContent-Type: application/json\r\nX-Pad: ".encode()
        chunks, step = itertools.cycle(data[i:i + 1] for i in range(len(data))), 1.0
    else:  # slow uploader: the whole request, ``rate`` bytes a second
        data, step = w.requests[kind][0], 0.25
        chunks = (data[i:i + max(1, int(rate * step))] for i in range(0, len(data), max(1, int(rate * step))))
    for chunk in chunks:
        if time.monotonic() >= end:
            return "cut at the end of the run"
        writer.write(chunk)
        await writer.drain()
        try:  # an answer (408) may come while still sending
            line = await asyncio.wait_for(reader.readline(), step)
        except TimeoutError:
            continue
        return f"answered {line.split()[1].decode()}" if line else "closed by the server"
    status, _, _ = await asyncio.wait_for(read_response(reader), CLIENT_TIMEOUT)
    return f"answered {status}"


async def sample_rss(pid: int | None, out: list[dict], end: float) -> None:
    while pid and time.monotonic() < end:
        out.append(proc_status(pid))
        await asyncio.sleep(0.5)


async def run_load(args: argparse.Namespace, w: Workload, base: str, pid: int | None) -> dict:
    host, port = base.split("//", 1)[1].rsplit(":", 1)
    stats = Stats()
    start = time.monotonic()
    counted_from, end = start + args.warmup, start + args.warmup + args.seconds
    samples: list[dict] = []
    fresh = round(args.fresh * args.clients)
    tasks = [asyncio.create_task(client(w, stats, host, int(port), end, args.malformed, seed=i, fresh=i < fresh))
             for i in range(args.clients)]
    tasks += [asyncio.create_task(slow_client(w, stats, host, int(port), end, SLOW[i % len(SLOW)], args.slow_rate))
              for i in range(args.slow)]
    await asyncio.sleep(args.warmup)
    stats.counting = True
    before = proc_status(pid) if pid else {}
    sampler = asyncio.create_task(sample_rss(pid, samples, end))
    await asyncio.gather(*tasks, sampler)
    elapsed = end - counted_from
    return {"stats": stats, "elapsed": elapsed, "before": before, "after": proc_status(pid) if pid else {},
            "samples": samples}


# ------------------------------------------------------------------------------------------ report

FAILURES = ("connection", "client timeout", "error")  # outcomes where no HTTP answer came


def problems(outcomes: Counter) -> Counter:
    """The outcomes that miss a goal: a failed connection, a 5xx for a valid request, a malformed
    request answered other than 4xx with a message."""
    valid = {k for k, _ in VALID}
    return Counter({(k, o): n for (k, o), n in outcomes.items()
                    if o.startswith(FAILURES) or (k in valid and o[:1] == "5")
                    or (k not in valid and not (o[:1] == "4" and len(o) == 3))})


def report(args: argparse.Namespace, res: dict, log_path: Path | None) -> dict:
    stats: Stats = res["stats"]
    secs = res["elapsed"]
    lat = np.asarray([t for _, t in stats.latencies]) * 1000
    valid = {k for k, _ in VALID}
    total = sum(stats.outcomes.values())
    p50, p99 = (float(np.percentile(lat, 50)), float(np.percentile(lat, 99))) if len(lat) else (float("nan"),) * 2
    before, after = res["before"].get("VmRSS", 0), res["after"].get("VmRSS", 0)
    peak_threads = max((s.get("Threads", 0) for s in res["samples"]), default=0)
    errors = sum("ERROR" in line or "Traceback" in line for line in log_path.read_text().splitlines()) \
        if log_path else None
    bad = problems(stats.outcomes) + problems(stats.warmup) + problems(stats.late)
    load = f", load average {os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else ""
    fresh = round(args.fresh * args.clients)

    print(f"\namnet serve under load: {args.clients} clients ({fresh} with a new connection per request) + "
          f"{args.slow} slow, {secs:.0f} s (after {args.warmup:g} s warm-up), {args.malformed:.0%} malformed; "
          f"{os.cpu_count()} CPUs{load}")
    print("| measure | value |\n|---|---|")
    print(f"| requests answered or failed | {total:,} ({total / secs:.0f}/s) |")
    print(f"| valid requests answered 200 | {len(lat):,} ({len(lat) / secs:.0f}/s) |")
    print(f"| latency of those: p50 / p99 / max | {p50:.0f} / {p99:.0f} / {lat.max() if len(lat) else 0:.0f} ms "
          f"(p99 / p50 = {p99 / p50:.2f}) |")
    for kind, _ in VALID:
        of_kind = np.asarray([t for k, t in stats.latencies if k == kind]) * 1000
        if len(of_kind):
            print(f"| &nbsp;&nbsp;{kind}: {len(of_kind):,}, p50 / p99 | {np.percentile(of_kind, 50):.0f} / "
                  f"{np.percentile(of_kind, 99):.0f} ms |")
    for (kind, outcome), n in sorted(stats.outcomes.items(), key=lambda x: (x[0][0] not in valid, x[0])):
        if not (kind in valid and outcome == "200"):
            print(f"| {'valid' if kind in valid else 'malformed'}, {kind}: {outcome} | {n:,} |")
    for when, tally in (("during the warm-up", stats.warmup), ("after the end", stats.late)):
        for (kind, outcome), n in sorted(problems(tally).items()):
            print(f"| {when}, {kind}: {outcome} | {n:,} |")
    for (kind, outcome), n in sorted(stats.slow.items()):
        print(f"| {kind}: {outcome} | {n} |")
    if before:
        print(f"| server RSS after warm-up -> end | {before / 2**20:.0f} MB -> {after / 2**20:.0f} MB "
              f"({(after - before) / before:+.1%}); peak {res['after'].get('VmHWM', 0) / 2**20:.0f} MB |")
        rss = [s["VmRSS"] for s in res["samples"] if "VmRSS" in s]
        if rss:
            quarters = [rss[min(len(rss) - 1, len(rss) * q // 4)] / 2**20 for q in (1, 2, 3)]
            print(f"| server RSS at 1/4, 1/2, 3/4 of the run | {', '.join(f'{q:.0f} MB' for q in quarters)} |")
        print(f"| server threads (most seen); open files at the start -> end | {peak_threads}; "
              f"{res['before'].get('FDs', 0)} -> {res['after'].get('FDs', 0)} |")
    if errors is not None:
        print(f"| ERROR lines in the server log | {errors} |")
    goals = {
        "no refused, reset or timed-out connection": not any(o.startswith(FAILURES) for _, o in bad),
        "no 5xx for a valid request": not any(k in valid and o[:1] == "5" for k, o in bad),
        "every malformed request answered 4xx with a message": not any(k not in valid for k, _ in bad),
        "p99 <= 5 x p50": p99 <= 5 * p50,
    }
    if before:
        goals["server RSS growth <= 10 %"] = (after - before) / before <= 0.10
    print("\ngoals: " + "; ".join(f"{name}: {'ok' if ok else 'MISSED'}" for name, ok in goals.items()))
    result = {"clients": args.clients, "fresh": fresh, "slow": args.slow, "seconds": round(secs, 1),
              "malformed": args.malformed, "requests": total, "rate": round(total / secs, 1), "valid_200": len(lat),
              "p50_ms": round(p50, 1), "p99_ms": round(p99, 1),
              "outcomes": {f"{k}: {o}": n for (k, o), n in sorted(stats.outcomes.items())},
              "other_problems": {f"{k}: {o}": n for (k, o), n in sorted((problems(stats.warmup)
                                                                         + problems(stats.late)).items())},
              "slow_outcomes": {f"{k}: {o}": n for (k, o), n in sorted(stats.slow.items())},
              "rss_before": before, "rss_after": after, "threads_peak": peak_threads, "log_errors": errors,
              "goals": goals}
    print(json.dumps(result))
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=64, help="concurrent keep-alive clients (default 64)")
    parser.add_argument("--seconds", type=float, default=60, help="measured duration (default 60)")
    parser.add_argument("--warmup", type=float, default=3, help="uncounted load before measuring (default 3 s)")
    parser.add_argument("--malformed", type=float, default=0.25, help="share of malformed requests (default 0.25)")
    parser.add_argument("--fresh", type=float, default=0.25, help="share of the clients that open a new "
                        "connection for each request (default 0.25; the others keep theirs alive)")
    parser.add_argument("--slow", type=int, default=4, help="slow clients besides --clients (default 4)")
    parser.add_argument("--slow-rate", type=int, default=2048, help="a slow uploader's bytes per second (default "
                        "2048: its ~1.4 MB upload outlasts the server's body timeout)")
    parser.add_argument("--model", help="model folder (default: build an untrained one)")
    parser.add_argument("--features", help="gallery features (default: amnet serve featurizes the gallery)")
    parser.add_argument("--gallery", help="the split (needed with --model: uploads use its images)")
    parser.add_argument("--num-images", type=int, default=1200, help="synthetic images when building")
    parser.add_argument("--gallery-size", type=int, default=500)
    parser.add_argument("--serve-args", default="", help="extra `amnet serve` flags, e.g. '--workers 1'")
    parser.add_argument("--url", help="load a server that is already running (http://HOST:PORT) instead")
    parser.add_argument("--pid", type=int, help="with --url: the server's process id, for its RSS")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="amnet-serve-load-") as tmp:
        proc, log_path = None, None
        if args.url:
            base, pid = args.url.rstrip("/"), args.pid
        else:
            proc, base, log_path = start_server(args, tmp)
            pid = proc.pid
        try:
            w = prepare(base)
            print(f"server {base} (pid {pid}); RSS after start {proc_status(pid).get('VmRSS', 0) / 2**20:.0f} MB; "
                  f"{args.clients} clients + {args.slow} slow for {args.warmup:g} + {args.seconds:g} s ...", flush=True)
            res = asyncio.run(run_load(args, w, base, pid))
            return report(args, res, log_path)
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=30)


if __name__ == "__main__":
    main()

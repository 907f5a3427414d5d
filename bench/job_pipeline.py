"""Benchmark: the import job against a naive sequential baseline, over 25 MB/s links.

    python bench/job_pipeline.py             # 100 MB x 3 runs each + one 1 GB job run
    python bench/job_pipeline.py --quick     # 100 MB only, one run each (smoke test)
    python bench/job_pipeline.py --skip-1gb --runs 5

What it does (issue 2, "Benchmark — bench/"):

* generates (once, cached under ``${XDG_CACHE_HOME:-~/.cache}/mediaimport/bench/``) a ~100 MB
  1080p30 H.264/AAC MP4 and a ~1 GB one (the first concatenated ten times), both faststart;
* serves them from an HTTP origin on 127.0.0.2 paced at 25 MB/s (Range, Content-Length);
* starts versitygw (a real, signature-checking S3 server) behind a TCP link paced at 25 MB/s
  in each direction, shared by all connections (the link is limited, not each connection);
* runs, alternately, ``mediaimport-job`` and a naive sequential baseline written here
  (``requests`` ``.content``, hashlib, ffprobe, an output-seek thumbnail, ``boto3.upload_file``),
  both as child processes with ``AWS_ENDPOINT_URL_S3`` pointing at the paced link, and takes the
  median wall time; the peak RSS of the job's whole process tree (ffmpeg children included) is
  sampled every 20 ms;
* times the job's own probe + thumbnail on the local 1080p file, and its own download + SHA-256
  from an unpaced loopback origin;
* runs the job a second way in the same loop: **brokered** (``MEDIAIMPORT_STORAGE=brokered``,
  no AWS_* variables; every write through presigned URLs from a channel server, the tests'
  stand-in for the operator's, that presigns for the same paced link), so ``direct_100mb_s``
  and ``brokered_100mb_s`` come from the same conditions;
* measures the job's CPU (user + sys, from /proc before the process is reaped) per small
  import (a ~2 s 640x360 clip), direct and brokered, with and without its ffprobe/ffmpeg.

It prints per-run details (with a transfer timeline from the origin's and the link's logs: when
the download and the upload started and ended, which shows whether they overlap), a table of
metrics against the targets, and, as the last line of stdout, one JSON object. Missed targets
are reported, not fatal; the exit status is non-zero only when the harness or the job breaks.
MB = 10**6 bytes; RSS in MiB.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib
import inspect
import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _support as sup
import boto3
import requests
from botocore.config import Config
from mediaimport_dev.s3server import S3Server

# The channel server the job tests use stands in for the operator's channel here too.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support.channel_server import ChannelServer

RATE = 25 * sup.MB
BUCKET = "bench"
TARGET_BASELINE_RATIO = 0.6
TARGET_FLOOR_FACTOR = 1.15
TARGET_FLOOR_SLACK_S = 0.5
TARGET_RSS_MIB = 160.0
TARGET_PROBE_THUMBNAIL_S = 0.4
TARGET_DOWNLOAD_MB_S = 400.0
TARGET_BROKERED_RATIO = 1.05  # issue 21: within 5 % of the direct upload
THUMBNAIL_WIDTH = 320


LOAD_AT_START = os.getloadavg()[0]


class HarnessError(RuntimeError):
    """The benchmark itself (or the job) broke: no figure can be trusted."""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- media


@dataclass(frozen=True)
class Media:
    name: str
    path: Path
    size: int
    sha256: str

    @property
    def floor_s(self) -> float:
        # Download and upload each cross a RATE link: the floor is the slower of the two.
        return max(self.size / RATE, self.size / RATE)


def media(name: str, path: Path) -> Media:
    return Media(name, path, path.stat().st_size, sup.file_sha256(path))


# --------------------------------------------------------------------------- child processes


@dataclass
class Finished:
    label: str
    returncode: int
    wall_s: float
    peak_rss_mib: float
    rss_samples: int
    peak_breakdown: str
    peak_at: float
    started: float
    started_wall: float
    ended: float
    stdout: str
    stderr: str

    def last_json(self) -> dict[str, Any]:
        lines = [line for line in self.stdout.splitlines() if line.strip()]
        if not lines:
            raise HarnessError(f"{self.label}: no output; stderr:\n{self.stderr[-3000:]}")
        try:
            value = json.loads(lines[-1])
        except json.JSONDecodeError as exc:
            raise HarnessError(
                f"{self.label}: last stdout line is not JSON: {lines[-1][:500]!r}; "
                f"stderr:\n{self.stderr[-3000:]}"
            ) from exc
        if not isinstance(value, dict):
            raise HarnessError(f"{self.label}: last stdout line is not a JSON object")
        return value


def run_measured(
    label: str, argv: list[str], env: dict[str, str], cwd: Path, timeout: float
) -> Finished:
    """Runs ``argv`` in its own session, sampling the RSS of its process tree."""
    out_path, err_path = cwd / f"{label}.stdout", cwd / f"{label}.stderr"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        started, started_wall = time.monotonic(), time.time()
        process = subprocess.Popen(
            argv, stdout=out, stderr=err, env=env, cwd=cwd, start_new_session=True
        )
        sampler = sup.TreeRSS(process.pid)
        sampler.start()
        try:
            returncode = process.wait(timeout)
        except subprocess.TimeoutExpired as exc:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            sampler.stop()
            raise HarnessError(
                f"{label}: still running after {timeout:.0f} s; stderr:\n"
                f"{err_path.read_text(errors='replace')[-3000:]}"
            ) from exc
        ended = time.monotonic()
        sampler.stop()
    # Grandchildren (ffmpeg) must not outlive the run they belong to.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    return Finished(
        label=label,
        returncode=returncode,
        wall_s=ended - started,
        peak_rss_mib=sampler.peak_mib,
        rss_samples=sampler.samples,
        peak_breakdown=sampler.peak_breakdown(),
        peak_at=sampler.peak_at - started,
        started=started,
        started_wall=started_wall,
        ended=ended,
        stdout=out_path.read_text(errors="replace"),
        stderr=err_path.read_text(errors="replace"),
    )


_LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) (.*)$")


def relative_log(run: Finished) -> list[str]:
    """The child's stderr, with Python logging's asctime turned into seconds from spawn."""
    lines = []
    for line in run.stderr.splitlines():
        match = _LOG_TIME.match(line)
        if match:
            stamp = time.mktime(time.strptime(match[1], "%Y-%m-%d %H:%M:%S"))
            offset = stamp + int(match[2]) / 1000 - run.started_wall
            lines.append(f"{offset:6.2f} {match[3]}")
        else:
            lines.append(f"       {line}")
    return lines


# --------------------------------------------------------------------------- the bench


@dataclass
class Timeline:
    """When bytes crossed the origin and the S3 link during one run (seconds from spawn)."""

    download_first: float | None = None
    download_last: float | None = None
    download_bytes: int = 0
    upload_first: float | None = None
    upload_last: float | None = None
    upload_bytes: int = 0
    end: float = 0.0
    # (seconds from spawn, MB downloaded so far, MB uploaded so far) on a regular grid
    series: list[tuple[float, float, float]] = field(default_factory=list)
    backlog_at_download_end_mb: float | None = None
    # S3 server think times >= 0.2 s: (seconds from spawn when the request was sent, wait)
    server_waits: list[tuple[float, float]] = field(default_factory=list)

    @property
    def upload_busy(self) -> float | None:
        """Share of the upload window the S3 link was carrying bytes (1.0 = saturated)."""
        if self.upload_first is None or self.upload_last is None:
            return None
        span = self.upload_last - self.upload_first
        return min(1.0, self.upload_bytes / RATE / span) if span > 0 else None

    def describe_series(self) -> list[str]:
        lines = []
        previous = (0.0, 0.0, 0.0)
        for t, down, up in self.series:
            dt = t - previous[0]
            rate = (up - previous[2]) / dt if dt > 0 else 0.0
            lines.append(
                f"{t:6.2f} s  downloaded {down:7.1f} MB  uploaded {up:7.1f} MB  "
                f"backlog {down - up:6.1f} MB  upload {rate:5.1f} MB/s"
            )
            previous = (t, down, up)
        return lines

    def describe(self) -> str:
        def fmt(value: float | None) -> str:
            return "-" if value is None else f"{value:5.2f}"

        return (
            f"download {fmt(self.download_first)}..{fmt(self.download_last)} s "
            f"({self.download_bytes / sup.MB:.0f} MB), "
            f"upload {fmt(self.upload_first)}..{fmt(self.upload_last)} s "
            f"({self.upload_bytes / sup.MB:.0f} MB), exit {self.end:5.2f} s"
            + (f"; S3 link busy {self.upload_busy:.0%}" if self.upload_busy is not None else "")
            + (
                f", {self.backlog_at_download_end_mb:.0f} MB left to upload at download end"
                if self.backlog_at_download_end_mb is not None
                else ""
            )
            + (
                "; S3 server waits "
                + ", ".join(f"{w:.2f} s at {t:.2f} s" for t, w in self.server_waits[:4])
                if self.server_waits
                else ""
            )
        )


def _value_at(points: list[tuple[float, int]], t: float) -> int:
    value = 0
    for when, count in points:
        if when > t:
            break
        value = count
    return value


@dataclass
class RunResult:
    kind: str  # "job" or "baseline"
    media: Media
    wall_s: float
    peak_rss_mib: float
    timeline: Timeline
    stages: dict[str, float] = field(default_factory=dict)
    rss_breakdown: str = ""  # process name and RSS (MiB) of each process at the peak
    rss_peak_at: float = 0.0  # seconds from spawn
    log: list[str] = field(default_factory=list)  # the child's stderr, times from spawn


@dataclass
class Bench:
    work: Path
    s3: S3Server
    link: sup.Helper
    origin: sup.Helper
    origin_log: Path
    link_log: Path
    thumbnail_at: float
    job_argv0: list[str]
    job_env: dict[str, str] = field(default_factory=dict)
    channel: ChannelServer | None = None
    counter: int = 0

    @property
    def link_url(self) -> str:
        return f"http://{self.link.host}:{self.link.port}"

    def url(self, item: Media) -> str:
        return f"http://{self.origin.host}:{self.origin.port}/{item.name}"

    def env(self, tmpdir: Path) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("AWS_")
            and key not in {"HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"}
        }
        env.update(self.s3.env())
        env["AWS_ENDPOINT_URL_S3"] = self.link_url
        env["AWS_CONFIG_FILE"] = str(self.work / "no-aws-config")
        env["AWS_SHARED_CREDENTIALS_FILE"] = str(self.work / "no-aws-credentials")
        env["AWS_EC2_METADATA_DISABLED"] = "true"
        env["NO_PROXY"] = "*"
        env["TMPDIR"] = str(tmpdir)
        return env

    def timeline(self, run: Finished) -> Timeline:
        time.sleep(0.3)  # the helpers log a transfer when its connection closes
        line = Timeline(end=run.wall_s)
        downloads = [
            t
            for t in sup.read_transfers(self.origin_log, run.started, run.ended)
            if t.kind == "download"
        ]
        uploads = [
            t
            for t in sup.read_transfers(self.link_log, run.started, run.ended + 1)
            if t.kind == "s3-up"
        ]
        waits = [
            t
            for t in sup.read_transfers(self.link_log, run.started, run.ended)
            if t.kind == "s3-wait"
        ]
        line.server_waits = sorted(
            ((t.first - run.started, t.last - t.first) for t in waits), key=lambda w: -w[1]
        )
        if downloads:
            line.download_first = min(t.first for t in downloads) - run.started
            line.download_last = max(t.last for t in downloads) - run.started
            line.download_bytes = sum(t.bytes for t in downloads)
        if uploads:
            line.upload_first = min(t.first for t in uploads) - run.started
            line.upload_last = min(max(t.last for t in uploads), run.ended) - run.started
            line.upload_bytes = sum(t.bytes for t in uploads)
        down = sup.read_counter(self.origin_log, "download", run.started, run.ended)
        up = sup.read_counter(self.link_log, "s3-up", run.started, run.ended)
        step = max(0.5, run.wall_s / 25)
        grid = [run.started + step * (i + 1) for i in range(int(run.wall_s / step))]
        grid.append(run.ended)
        line.series = [
            (t - run.started, _value_at(down, t) / sup.MB, _value_at(up, t) / sup.MB) for t in grid
        ]
        if line.download_last is not None:
            t = run.started + line.download_last
            line.backlog_at_download_end_mb = (_value_at(down, t) - _value_at(up, t)) / sup.MB
        return line

    def clean_bucket(self, prefix: str) -> tuple[list[str], int]:
        """Deletes what a run stored under ``prefix``; returns (keys, unfinished uploads)."""
        client = self.s3.client()
        keys = [
            item["Key"]
            for page in client.get_paginator("list_objects_v2").paginate(
                Bucket=BUCKET, Prefix=prefix
            )
            for item in page.get("Contents", [])
        ]
        for key in keys:
            client.delete_object(Bucket=BUCKET, Key=key)
        pending = client.list_multipart_uploads(Bucket=BUCKET, Prefix=prefix).get("Uploads", [])
        for upload in pending:
            client.abort_multipart_upload(
                Bucket=BUCKET, Key=upload["Key"], UploadId=upload["UploadId"]
            )
        return keys, len(pending)

    def _next_prefix(self, kind: str, item: Media) -> tuple[str, Path]:
        self.counter += 1
        tmpdir = self.work / f"run-{self.counter:02d}-{kind}"
        tmpdir.mkdir()
        return f"media/bench/{kind}-{self.counter:02d}", tmpdir

    def brokered_env(self, tmpdir: Path, prefix: str) -> dict[str, str]:
        """The pod's environment in brokered mode: the channel, no S3 credential at all."""
        assert self.channel is not None
        channel = self.channel.register(BUCKET, prefix)
        env = {k: v for k, v in self.env(tmpdir).items() if not k.startswith("AWS_")}
        return env | channel.env()

    def run_job(self, item: Media, *, brokered: bool = False) -> RunResult:
        kind = "brokered" if brokered else "job"
        prefix, tmpdir = self._next_prefix(kind, item)
        argv = [
            *self.job_argv0,
            "--url", self.url(item),
            "--bucket", BUCKET,
            "--key-prefix", prefix,
            "--name", "bench.mp4",
            "--type", "video",
            "--thumbnail-width", str(THUMBNAIL_WIDTH),
            "--thumbnail-at", str(self.thumbnail_at),
            "--result-file", str(tmpdir / "result.json"),
            "--allow-network", "127.0.0.2/32",
        ]  # fmt: skip
        jobtmp = tmpdir / "tmp"
        jobtmp.mkdir()
        env = self.brokered_env(jobtmp, prefix) if brokered else self.env(jobtmp)
        run = run_measured("job", argv, env | self.job_env, tmpdir, timeout=60 + 6 * item.floor_s)
        if run.returncode != 0:
            raise HarnessError(
                f"the job failed (exit {run.returncode}) on {item.name}:\n"
                f"stdout tail: {run.stdout[-1500:]}\nstderr tail: {run.stderr[-3000:]}"
            )
        result = run.last_json()
        if result.get("status") != "ready":
            raise HarnessError(f"the job did not report ready: {result}")
        if result.get("size") != item.size or result.get("sha256") != item.sha256:
            raise HarnessError(
                f"the job reported size {result.get('size')} sha256 {result.get('sha256')}, "
                f"expected {item.size} {item.sha256}"
            )
        stored = self.s3.client().head_object(Bucket=BUCKET, Key=result["key"])
        if stored["ContentLength"] != item.size:
            raise HarnessError(f"stored object has {stored['ContentLength']} bytes")
        leftovers = list(jobtmp.iterdir())
        if leftovers:
            log(f"  warning: the job left temp files behind: {[p.name for p in leftovers]}")
        timeline = self.timeline(run)
        _keys, pending = self.clean_bucket(prefix)
        if pending:
            log(f"  warning: {pending} unfinished multipart upload(s) under {prefix}")
        shutil.rmtree(tmpdir, ignore_errors=True)
        return RunResult(
            kind, item, run.wall_s, run.peak_rss_mib, timeline,
            rss_breakdown=run.peak_breakdown, rss_peak_at=run.peak_at, log=relative_log(run),
        )  # fmt: skip

    def job_cpu(self, item: Media, *, brokered: bool) -> tuple[float, float]:
        """One import of ``item``: CPU seconds (user + sys) of the job process itself, and
        with the children it waited for (ffprobe, ffmpeg)."""
        kind = "cpu-brokered" if brokered else "cpu-direct"
        prefix, tmpdir = self._next_prefix(kind, item)
        argv = [
            *self.job_argv0, "--url", self.url(item), "--bucket", BUCKET, "--key-prefix", prefix,
            "--result-file", str(tmpdir / "result.json"), "--allow-network", "127.0.0.2/32",
        ]  # fmt: skip
        jobtmp = tmpdir / "tmp"
        jobtmp.mkdir()
        env = self.brokered_env(jobtmp, prefix) if brokered else self.env(jobtmp)
        own, total, code = process_cpu(argv, env | self.job_env, tmpdir, timeout=120)
        result = json.loads((tmpdir / "result.json").read_text())
        if code != 0 or result.get("status") != "ready":
            raise HarnessError(f"{kind}: the job failed (exit {code}): {result}")
        self.clean_bucket(prefix)
        shutil.rmtree(tmpdir, ignore_errors=True)
        return own, total

    def run_baseline(self, item: Media) -> RunResult:
        prefix, tmpdir = self._next_prefix("baseline", item)
        argv = [
            sys.executable, str(Path(__file__).resolve()), "_baseline",
            self.url(item), BUCKET, prefix, str(self.thumbnail_at),
        ]  # fmt: skip
        run = run_measured(
            "baseline", argv, self.env(tmpdir), tmpdir, timeout=120 + 10 * item.floor_s
        )
        if run.returncode != 0:
            raise HarnessError(
                f"the baseline failed (exit {run.returncode}):\n{run.stderr[-3000:]}"
            )
        result = run.last_json()
        if result.get("sha256") != item.sha256:
            raise HarnessError(f"the baseline hashed {result.get('sha256')}, not {item.sha256}")
        timeline = self.timeline(run)
        self.clean_bucket(prefix)
        shutil.rmtree(tmpdir, ignore_errors=True)
        stages = {k: float(v) for k, v in result.get("stages", {}).items()}
        return RunResult(
            "baseline", item, run.wall_s, run.peak_rss_mib, timeline, stages,
            rss_breakdown=run.peak_breakdown, rss_peak_at=run.peak_at,
        )  # fmt: skip


def process_cpu(
    argv: list[str], env: dict[str, str], cwd: Path, timeout: float
) -> tuple[float, float, int]:
    """Run ``argv``; (its own user + sys seconds, the same with its reaped children, exit
    code), read from /proc/PID/stat after it exits and before it is reaped."""
    with (cwd / "cpu.out").open("wb") as out, (cwd / "cpu.err").open("wb") as err:
        process = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=err)
    killer = threading.Timer(timeout, process.kill)
    killer.start()
    try:
        os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOWAIT)
        stat = Path(f"/proc/{process.pid}/stat").read_text()
    finally:
        killer.cancel()
        code = process.wait()
    fields = stat[stat.rindex(")") + 2 :].split()
    ticks = os.sysconf("SC_CLK_TCK")
    utime, stime, cutime, cstime = (int(value) / ticks for value in fields[11:15])
    return utime + stime, utime + stime + cutime + cstime, code


def media_small() -> Path:
    """A small import: ~2 s of 640x360 H.264, faststart (a few hundred KB)."""
    target = sup.cache_dir() / f"bench-small-{sup.MEDIA_VERSION}.mp4"
    if not target.exists():
        tmp = target.with_suffix(".part.mp4")
        subprocess.run(
            ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30",
             "-t", "2", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
             "-movflags", "+faststart", str(tmp)],
            check=True,
        )  # fmt: skip
        tmp.rename(target)
    return target


# --------------------------------------------------------------------------- the baseline


def baseline_main(url: str, bucket: str, prefix: str, thumbnail_at: float) -> None:
    """The naive sequential import: everything in memory, one step after the other."""
    stages: dict[str, float] = {}
    clock = time.monotonic()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.monotonic()
        stages[name] = round(now - clock, 4)
        clock = now

    response = requests.get(url, timeout=60)
    response.raise_for_status()
    data = response.content
    lap("download")
    digest = hashlib.sha256(data).hexdigest()
    lap("hash")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.mp4"
        path.write_bytes(data)
        lap("write")
        probe = subprocess.run(
            ["ffprobe", "-v", "error", "-print_format", "json", "-show_format",
             "-show_streams", str(path)],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        json.loads(probe.stdout)
        lap("probe")
        thumb = Path(tmp) / "thumbnail.jpg"
        subprocess.run(
            ["ffmpeg", "-v", "error", "-y", "-i", str(path), "-ss", str(thumbnail_at),
             "-frames:v", "1", "-vf", f"scale={THUMBNAIL_WIDTH}:-2", "-q:v", "2", str(thumb)],
            check=True,
        )  # fmt: skip
        lap("thumbnail")
        client = boto3.client("s3", config=Config(s3={"addressing_style": "path"}))
        client.upload_file(
            str(path), bucket, f"{prefix}/bench.mp4",
            ExtraArgs={"ContentType": "video/mp4", "Metadata": {"sha256": digest}},
        )  # fmt: skip
        client.upload_file(
            str(thumb), bucket, f"{prefix}/thumbnail.jpg", ExtraArgs={"ContentType": "image/jpeg"}
        )
        lap("upload")
    print(json.dumps({"sha256": digest, "size": len(data), "stages": stages}))


# --------------------------------------------------------------------------- the job's parts


def _job_module(name: str) -> Any | None:
    try:
        return importlib.import_module(f"mediaimport_job.{name}")
    except ImportError:
        return None


def _find(module: Any, names: tuple[str, ...]) -> Callable[..., Any] | None:
    for name in names:
        found = getattr(module, name, None)
        if callable(found) and not inspect.isclass(found):
            return found  # type: ignore[no-any-return]
    return None


def job_probe_thumbnail(
    path: Path, thumbnail_at: float, out: Path
) -> tuple[Callable[[], None], str]:
    """One probe + input-seek thumbnail as the job does them; and where that code came from."""
    probe_mod, thumb_mod = _job_module("probe"), _job_module("thumbnail")
    probe = _find(probe_mod, ("probe",)) if probe_mod else None
    render = _find(thumb_mod, ("render",)) if thumb_mod else None
    if probe is not None and render is not None:
        job_probe, job_render = probe, render

        def job() -> None:
            probed = job_probe(path, "video", path.name)
            job_render(
                path, out, width=THUMBNAIL_WIDTH, at=thumbnail_at,
                duration=probed.media.duration, stream=probed.video_stream,
            )  # fmt: skip

        return job, "mediaimport_job.probe.probe + mediaimport_job.thumbnail.render"

    def commands() -> None:
        subprocess.run(
            ["ffprobe", "-v", "error", "-protocol_whitelist", "file", "-threads", "1",
             "-print_format", "json", "-show_format", "-show_streams", str(path)],
            check=True, capture_output=True, timeout=30,
        )  # fmt: skip
        subprocess.run(
            ["ffmpeg", "-v", "error", "-y", "-protocol_whitelist", "file", "-threads", "1",
             "-ss", str(thumbnail_at), "-i", str(path), "-frames:v", "1",
             "-vf", f"scale={THUMBNAIL_WIDTH}:-2", "-q:v", "2", str(out)],
            check=True, capture_output=True, timeout=30,
        )  # fmt: skip

    return commands, "equivalent ffprobe/ffmpeg commands (the job's functions were not found)"


def download_main(url: str, dest: str, repeats: int) -> None:
    """Downloads ``url`` to ``dest`` with SHA-256 the way the job does, ``repeats`` + 1 times
    (the first warms up); prints the timings."""
    module = _job_module("download")
    fn = _find(module, ("download",)) if module else None
    via = (
        f"{fn.__module__}.{fn.__name__}"
        if fn
        else ("requests iter_content(1 MiB) + hashlib (the job's download was not found)")
    )
    seconds: list[float] = []
    size, digest = 0, ""
    for _ in range(repeats + 1):
        Path(dest).unlink(missing_ok=True)
        started = time.monotonic()
        if fn is not None:
            size, digest = _adapt_job_download(fn, url, Path(dest))
        else:
            size, digest = _requests_download(url, Path(dest))
        seconds.append(time.monotonic() - started)
    Path(dest).unlink(missing_ok=True)
    print(json.dumps({"size": size, "sha256": digest, "seconds": seconds[1:], "via": via}))


def _requests_download(url: str, dest: Path) -> tuple[int, str]:
    hasher = hashlib.sha256()
    size = 0
    with requests.get(url, stream=True, timeout=30) as response, dest.open("wb") as f:
        response.raise_for_status()
        for chunk in response.iter_content(sup.MIB):
            hasher.update(chunk)
            f.write(chunk)
            size += len(chunk)
    return size, hasher.hexdigest()


def _adapt_job_download(fn: Callable[..., Any], url: str, dest: Path) -> tuple[int, str]:
    """Calls ``mediaimport_job.download.download`` the way the job's pipeline does."""
    netguard = importlib.import_module("mediaimport_job.netguard")
    module = importlib.import_module(fn.__module__)
    http = netguard.GuardedPoolManager(
        netguard.AddressPolicy(allowed=(netguard.parse_network("127.0.0.2/32"),))
    )
    limits = module.DownloadLimits(max_bytes=1 << 40)
    result = fn(url, dest, http, limits)
    return int(result.size), str(result.sha256)


# --------------------------------------------------------------------------- main


def measure_probe_thumbnail(
    item: Media, thumbnail_at: float, work: Path, repeats: int = 9
) -> tuple[float, str]:
    call, via = job_probe_thumbnail(item.path, thumbnail_at, work / "thumb.jpg")
    call()  # warm the page cache and the imports
    times = []
    for _ in range(repeats):
        started = time.monotonic()
        call()
        times.append(time.monotonic() - started)
    return statistics.median(times), via


def measure_download(item: Media, repeats: int = 3) -> tuple[float, str]:
    """Median rate of the job's download + SHA-256 from an unpaced loopback origin."""
    with sup.scratch("mi-bench-dl-") as tmp:
        fast = sup.start_origin("127.0.0.2", {item.name: item.path}, 0)
        try:
            out = subprocess.run(
                [sys.executable, str(Path(__file__).resolve()), "_download",
                 f"http://127.0.0.2:{fast.port}/{item.name}", str(tmp / "dl.bin"), str(repeats)],
                check=False, capture_output=True, text=True, timeout=300,
            )  # fmt: skip
        finally:
            fast.stop()
    if out.returncode != 0:
        raise HarnessError(f"the download measurement failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if result["sha256"] != item.sha256 or result["size"] != item.size:
        raise HarnessError(f"the download measurement got the wrong bytes: {result}")
    return item.size / statistics.median(result["seconds"]) / sup.MB, str(result["via"])


def find_job() -> list[str]:
    candidates = [Path(sys.executable).parent / "mediaimport-job"]
    found = shutil.which("mediaimport-job")
    if found:
        candidates.append(Path(found))
    for candidate in candidates:
        if candidate.exists():
            return [str(candidate)]
    raise HarnessError("mediaimport-job is not installed (pip install -e . in the venv)")


def fmt_s(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="100 MB only, one run each")
    parser.add_argument("--skip-1gb", action="store_true", help="no 1 GB run")
    parser.add_argument("--runs", type=int, default=3, help="runs of each at 100 MB (median)")
    parser.add_argument("--runs-1gb", type=int, default=1, help="job runs at 1 GB")
    parser.add_argument(
        "--baseline-1gb",
        action="store_true",
        help="also run the baseline at 1 GB (slow; holds 1 GB in memory)",
    )
    parser.add_argument(
        "--thumbnail-at",
        type=float,
        default=10.0,
        help="thumbnail time in seconds, for the job and the baseline",
    )
    parser.add_argument(
        "--show-logs",
        action="store_true",
        help="print the job's log of each run (times from spawn)",
    )
    parser.add_argument(
        "--job-env", action="append", default=[], metavar="NAME=VALUE",
        help="extra environment for the job (experiments, e.g. MALLOC_ARENA_MAX=2)",
    )  # fmt: skip
    parser.add_argument(
        "--skip-brokered", action="store_true", help="no brokered runs (direct mode only)"
    )
    parser.add_argument(
        "--cpu-runs", type=int, default=5, help="small imports per mode for the CPU figure"
    )
    # For testing the harness itself while one side is missing or broken.
    parser.add_argument("--skip-baseline", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--skip-job", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--skip-micro", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.skip_1gb = 1, True
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if any("=" not in item for item in args.job_env):
        parser.error("--job-env takes NAME=VALUE")

    job_argv0 = [] if args.skip_job else find_job()
    small = media("bench-100mb.mp4", sup.media_100mb())
    big = None if args.skip_1gb else media("bench-1gb.mp4", sup.media_1gb())
    tiny = media("bench-small.mp4", media_small())
    files = {small.name: small.path, tiny.name: tiny.path} | ({big.name: big.path} if big else {})
    brokered_runs = bool(job_argv0) and not args.skip_brokered

    with sup.scratch("mi-bench-") as work:
        if args.skip_micro:
            probe_thumbnail_s = probe_thumbnail_at_s = download_mb_s = math.nan
            probe_via = download_via = "skipped"
        else:
            log(f"probe + thumbnail on {small.path.name} ...")
            # The official figure uses the job's default time (0: the first frame); the figure at
            # --thumbnail-at shows the cost of a mid-GOP seek (x264's default GOP is 250 frames).
            probe_thumbnail_s, probe_via = measure_probe_thumbnail(small, 0.0, work)
            probe_thumbnail_at_s, _ = measure_probe_thumbnail(small, args.thumbnail_at, work)
            log(
                f"  {probe_thumbnail_s:.3f} s (at 0 s), {probe_thumbnail_at_s:.3f} s "
                f"(at {args.thumbnail_at:g} s) via {probe_via}"
            )
            log("unpaced download + SHA-256 ...")
            download_mb_s, download_via = measure_download(small)
            log(f"  {download_mb_s:.0f} MB/s via {download_via}")

        origin_log, link_log = work / "origin.jsonl", work / "link.jsonl"
        s3 = S3Server(root=work / "s3")
        s3.start()
        origin = link = channel = None
        try:
            s3.create_bucket(BUCKET)
            origin = sup.start_origin("127.0.0.2", files, RATE, origin_log)
            link = sup.start_proxy("127.0.0.1", (s3.host, s3.port), RATE, link_log)
            if brokered_runs:
                # Presigned for the paced link, like the job's own client in direct mode.
                channel = ChannelServer(s3, endpoint_url=f"http://{link.host}:{link.port}").start()
            bench = Bench(
                work, s3, link, origin, origin_log, link_log, args.thumbnail_at, job_argv0,
                job_env=dict(item.split("=", 1) for item in args.job_env), channel=channel,
            )  # fmt: skip
            # Compile and cache both sides' imports once, outside the timed runs.
            if job_argv0:
                subprocess.run([*job_argv0, "--help"], check=True, capture_output=True)
            subprocess.run([sys.executable, "-c", "import boto3, requests"], check=True)

            jobs: list[RunResult] = []
            brokered: list[RunResult] = []
            baselines: list[RunResult] = []
            cpu: dict[str, list[tuple[float, float]]] = {"direct": [], "brokered": []}
            for i in range(args.runs):
                if job_argv0:
                    log(f"100 MB run {i + 1}/{args.runs}: job ...")
                    jobs.append(bench.run_job(small))
                    log(
                        f"  {jobs[-1].wall_s:.2f} s, peak RSS {jobs[-1].peak_rss_mib:.0f} MiB; "
                        f"{jobs[-1].timeline.describe()}"
                    )
                if brokered_runs:
                    log(f"100 MB run {i + 1}/{args.runs}: job, brokered ...")
                    brokered.append(bench.run_job(small, brokered=True))
                    log(
                        f"  {brokered[-1].wall_s:.2f} s, peak RSS "
                        f"{brokered[-1].peak_rss_mib:.0f} MiB; {brokered[-1].timeline.describe()}"
                    )
                if args.skip_baseline:
                    continue
                log(f"100 MB run {i + 1}/{args.runs}: baseline ...")
                baselines.append(bench.run_baseline(small))
                log(
                    f"  {baselines[-1].wall_s:.2f} s, peak RSS {baselines[-1].peak_rss_mib:.0f}"
                    f" MiB; {baselines[-1].stages}"
                )
            if job_argv0 and args.cpu_runs > 0:
                log(f"CPU per small import ({tiny.size / 1000:.0f} kB), {args.cpu_runs} each ...")
                modes = ["direct", "brokered"] if brokered_runs else ["direct"]
                bench.job_cpu(tiny, brokered=False)  # warm the page cache
                for _ in range(args.cpu_runs):
                    for mode in modes:
                        cpu[mode].append(bench.job_cpu(tiny, brokered=mode == "brokered"))
                for mode in modes:
                    own = statistics.median(c[0] for c in cpu[mode])
                    total = statistics.median(c[1] for c in cpu[mode])
                    log(f"  {mode}: {own:.3f} s (job), {total:.3f} s (with ffprobe/ffmpeg)")
            big_jobs: list[RunResult] = []
            big_baselines: list[RunResult] = []
            if big:
                for i in range(args.runs_1gb if job_argv0 else 0):
                    log(f"1 GB run {i + 1}/{args.runs_1gb}: job (about {big.floor_s:.0f} s) ...")
                    big_jobs.append(bench.run_job(big))
                    log(
                        f"  {big_jobs[-1].wall_s:.2f} s, peak RSS "
                        f"{big_jobs[-1].peak_rss_mib:.0f} MiB; {big_jobs[-1].timeline.describe()}"
                    )
                if args.baseline_1gb:
                    log("1 GB baseline ...")
                    big_baselines.append(bench.run_baseline(big))
        finally:
            if channel is not None:
                channel.stop()
            for helper in (link, origin):
                if helper:
                    helper.stop()
            s3.stop()

    report(
        small=small, big=big, jobs=jobs, brokered=brokered, cpu=cpu, baselines=baselines,
        big_jobs=big_jobs,
        big_baselines=big_baselines, probe_thumbnail_s=probe_thumbnail_s, probe_via=probe_via,
        probe_thumbnail_at_s=probe_thumbnail_at_s, show_logs=args.show_logs,
        download_mb_s=download_mb_s, download_via=download_via, thumbnail_at=args.thumbnail_at,
    )  # fmt: skip
    return 0


def report(
    *, small: Media, big: Media | None, jobs: list[RunResult], brokered: list[RunResult],
    cpu: dict[str, list[tuple[float, float]]], baselines: list[RunResult],
    big_jobs: list[RunResult], big_baselines: list[RunResult], probe_thumbnail_s: float,
    probe_via: str, probe_thumbnail_at_s: float, download_mb_s: float, download_via: str,
    thumbnail_at: float, show_logs: bool,
) -> None:  # fmt: skip
    def median(runs: list[RunResult]) -> float | None:
        return statistics.median(r.wall_s for r in runs) if runs else None

    def peak(runs: list[RunResult]) -> float | None:
        return max(r.peak_rss_mib for r in runs) if runs else None

    wall = median(jobs)
    baseline = median(baselines)
    floor = small.floor_s
    wall_big = median(big_jobs)
    floor_big = big.floor_s if big else None
    rss_small, rss_big = peak(jobs), peak(big_jobs)

    print(
        f"\nmediaimport job benchmark — links paced at {RATE / sup.MB:.0f} MB/s, "
        f"thumbnail at {thumbnail_at:g} s, {os.cpu_count()} CPUs"
    )
    print(
        f"load average (1 min) at start {LOAD_AT_START:.2f}, at end {os.getloadavg()[0]:.2f} "
        "(other work on the machine shows up in every timing)"
    )
    print(
        f"files: {small.path.name} {small.size / sup.MB:.1f} MB"
        + (f", {big.path.name} {big.size / sup.MB:.1f} MB" if big else "")
    )
    print("\nruns (times from spawn; transfers seen at the origin and the S3 link):")
    for run in [*jobs, *brokered, *baselines, *big_jobs, *big_baselines]:
        print(
            f"  {run.kind:8} {run.media.size / sup.MB:6.0f} MB  wall {run.wall_s:6.2f} s  "
            f"RSS {run.peak_rss_mib:6.0f} MiB  {run.timeline.describe()}"
        )
        print(f"           RSS peak at {run.rss_peak_at:.2f} s: {run.rss_breakdown} (MiB)")
        if run.stages:
            print("           stages: " + ", ".join(f"{k} {v:.2f}" for k, v in run.stages.items()))
        if show_logs:
            for line in run.log:
                print(f"           | {line}")
            for line in run.timeline.describe_series():
                print(f"           ~ {line}")
    print(f"\nprobe + thumbnail via: {probe_via}")
    print(f"download + hash via:   {download_via}")

    rows: list[tuple[str, str, str, bool | None]] = []

    def row(metric: str, value: str, target: str, ok: bool | None) -> None:
        rows.append((metric, value, target, ok))

    floor_limit = TARGET_FLOOR_FACTOR * floor + TARGET_FLOOR_SLACK_S
    row(f"wall_s (job, 100 MB, median of {len(jobs)})", fmt_s(wall), "", None)
    if baseline is not None and wall is not None:
        row(
            "  vs baseline",
            f"{wall / baseline:.2f} x",
            f"<= {TARGET_BASELINE_RATIO} x",
            wall <= TARGET_BASELINE_RATIO * baseline,
        )
    if wall is not None:
        row(
            "  vs floor",
            f"{wall:.2f} s",
            f"<= {floor_limit:.2f} s ({TARGET_FLOOR_FACTOR} x floor + {TARGET_FLOOR_SLACK_S})",
            wall <= floor_limit,
        )
    wall_brokered = median(brokered)
    if wall_brokered is not None:
        row(f"brokered_100mb_s (median of {len(brokered)})", fmt_s(wall_brokered), "", None)
        if wall is not None:
            row(
                "  brokered vs direct",
                f"{wall_brokered / wall:.3f} x",
                f"<= {TARGET_BROKERED_RATIO} x",
                wall_brokered <= TARGET_BROKERED_RATIO * wall,
            )
        row("peak RSS, brokered, 100 MB [info]", f"{peak(brokered):.0f} MiB", "", None)

    def cpu_median(mode: str, index: int) -> float | None:
        runs = cpu.get(mode, [])
        return statistics.median(run[index] for run in runs) if runs else None

    for mode in ("direct", "brokered"):
        own, total = cpu_median(mode, 0), cpu_median(mode, 1)
        if own is not None and total is not None:
            row(
                f"cpu_s_small_{mode} (job process; with tools) [info]",
                f"{own:.3f} s; {total:.3f} s",
                "",
                None,
            )
    row(f"baseline_wall_s (median of {len(baselines)})", fmt_s(baseline), "", None)
    row("floor_s (100 MB at 25 MB/s)", fmt_s(floor), "", None)
    if wall_big is not None and floor_big is not None:
        limit = TARGET_FLOOR_FACTOR * floor_big + TARGET_FLOOR_SLACK_S
        row(
            f"wall (job, 1 GB, median of {len(big_jobs)}) [info]",
            fmt_s(wall_big),
            f"<= {limit:.2f} s (floor {floor_big:.2f} s)",
            wall_big <= limit,
        )
    if big_baselines:
        row("baseline wall (1 GB) [info]", fmt_s(median(big_baselines)), "", None)
    for label, value in (("peak_rss_mib_100mb", rss_small), ("peak_rss_mib_1gb", rss_big)):
        row(
            label,
            "n/a" if value is None else f"{value:.0f} MiB",
            f"<= {TARGET_RSS_MIB:.0f} MiB",
            None if value is None else value <= TARGET_RSS_MIB,
        )
    if baselines:
        row("baseline peak RSS, 100 MB [info]", f"{peak(baselines):.0f} MiB", "", None)
    if not math.isnan(probe_thumbnail_s):
        row(
            "probe_thumbnail_s (1080p, local, frame at 0 s)",
            f"{probe_thumbnail_s:.3f} s",
            f"<= {TARGET_PROBE_THUMBNAIL_S} s",
            probe_thumbnail_s <= TARGET_PROBE_THUMBNAIL_S,
        )
        row(
            f"  same, frame at {thumbnail_at:g} s [info]",
            f"{probe_thumbnail_at_s:.3f} s",
            f"<= {TARGET_PROBE_THUMBNAIL_S} s",
            probe_thumbnail_at_s <= TARGET_PROBE_THUMBNAIL_S,
        )
        row(
            "download_hash_mb_s (unpaced)",
            f"{download_mb_s:.0f} MB/s",
            f">= {TARGET_DOWNLOAD_MB_S:.0f} MB/s",
            download_mb_s >= TARGET_DOWNLOAD_MB_S,
        )

    width = max(len(r[0]) for r in rows)
    vwidth = max(len(r[1]) for r in rows)
    twidth = max(len(r[2]) for r in rows)
    print(f"\n{'metric':{width}}  {'value':>{vwidth}}  {'target':{twidth}}  result")
    print("-" * (width + vwidth + twidth + 14))
    for metric, shown, target, ok in rows:
        verdict = "" if ok is None else ("pass" if ok else "FAIL")
        if ok is not None and "[info]" in metric:
            verdict = "(within)" if ok else "(over)"
        print(f"{metric:{width}}  {shown:>{vwidth}}  {target:{twidth}}  {verdict}")
    counted = [ok for metric, _, _, ok in rows if ok is not None and "[info]" not in metric]
    missed = [metric.strip() for metric, _, _, ok in rows if ok is False and "[info]" not in metric]
    print(f"\ntargets: {'all met' if all(counted) else 'missed: ' + ', '.join(missed)}")

    def num(value: float | None, digits: int = 3) -> float | None:
        return None if value is None or math.isnan(value) else round(value, digits)

    summary = {
        "wall_s": num(wall),
        "baseline_wall_s": num(baseline),
        "floor_s": num(floor),
        "peak_rss_mib_100mb": num(rss_small, 1),
        "peak_rss_mib_1gb": num(rss_big, 1),
        "probe_thumbnail_s": num(probe_thumbnail_s),
        "download_hash_mb_s": num(download_mb_s, 1),
        "direct_100mb_s": num(wall),
        "brokered_100mb_s": num(wall_brokered),
        "peak_rss_mib_brokered_100mb": num(peak(brokered), 1),
        "cpu_s_small_direct": num(cpu_median("direct", 0)),
        "cpu_s_small_brokered": num(cpu_median("brokered", 0)),
        "cpu_s_small_direct_with_tools": num(cpu_median("direct", 1)),
        "cpu_s_small_brokered_with_tools": num(cpu_median("brokered", 1)),
        "wall_s_1gb": num(wall_big),
        "floor_s_1gb": num(floor_big),
        "targets_met": all(counted),
    }
    print(json.dumps(summary))


def entry() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "_baseline":
        url, bucket, prefix, at = sys.argv[2:6]
        baseline_main(url, bucket, prefix, float(at))
        return 0
    if len(sys.argv) > 1 and sys.argv[1] == "_download":
        download_main(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return 0
    try:
        return main()
    except HarnessError as exc:
        log(f"benchmark broken: {exc}")
        return 1


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    sys.exit(entry())

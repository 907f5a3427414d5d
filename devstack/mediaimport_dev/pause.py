"""The pod sandbox ("pause") image containerd's CRI names as ``sandbox_image``.

Every pod starts with one process that holds its namespaces. No registry is
reachable here, so it is a tiny static Go program made on this machine: it
sleeps until SIGINT or SIGTERM, and as PID 1 of a pod that shares its process
namespace it reaps orphaned children, as Kubernetes' own pause does. One file in
a scratch image, running as nobody.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from mediaimport_dev.buildah import Buildah
from mediaimport_dev.imageinputs import Hasher

VERSION = "1.0"
PAUSE_IMAGE = f"localhost/mediaimport/pause:{VERSION}"

GO_MOD = "module mediaimport.local/pause\n\ngo 1.21\n"
MAIN_GO = """\
// pause holds a pod's namespaces: it waits for SIGINT or SIGTERM and exits 0,
// reaping any child re-parented to it meanwhile.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for sig := range signals {
		if sig != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var status syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
"""
# Nobody: the sandbox needs no privilege.
USER = "65534:65534"


def go_executable() -> str:
    found = shutil.which("go") or shutil.which("go", path="/usr/local/go/bin")
    if found is None:
        raise RuntimeError("go is not installed; the pause image is built from source")
    return found


def go_version() -> str:
    return subprocess.run(
        [go_executable(), "env", "GOVERSION"], capture_output=True, text=True, check=True,
        timeout=60,
    ).stdout.strip()


def pause_key() -> str:
    return (
        Hasher("pause-image")
        .add_text("name", PAUSE_IMAGE)
        .add_text("go.mod", GO_MOD)
        .add_text("main.go", MAIN_GO)
        .add_text("user", USER)
        .add_text("go", go_version())
        .hexdigest()
    )


def build_pause(buildah: Buildah, source_dir: Path) -> None:
    """Compile the program (static, CGO off) and commit it alone in a scratch image."""
    source_dir.mkdir(parents=True, exist_ok=True)
    (source_dir / "go.mod").write_text(GO_MOD)
    (source_dir / "main.go").write_text(MAIN_GO)
    binary = source_dir / "pause"
    env = {**os.environ, "CGO_ENABLED": "0", "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod"}
    subprocess.run(
        [go_executable(), "build", "-trimpath", "-ldflags=-s -w", "-o", str(binary), "."],
        cwd=source_dir, env=env, check=True, timeout=600,
    )
    container = buildah.run("from", "scratch").strip()
    try:
        buildah.run("copy", "--chmod", "0755", container, str(binary), "/pause")
        buildah.run("config", "--entrypoint", '["/pause"]', "--user", USER, container)
        buildah.run("commit", "--quiet", "--rm", container, PAUSE_IMAGE)
    except BaseException:
        buildah.run("rm", container)
        raise

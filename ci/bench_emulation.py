"""ci/bench --emulated: what foreign RUN steps cost.

1. An emulated apt step: `apt-get install python3` for linux/arm64 on an amd64 host,
   offline (the base holds the package lists and the .debs, so the network is not
   measured), in chroot isolation as in a Docker-executor job, run by kiln's exec
   tracer, and the same build while a binfmt_misc
   handler for the same static qemu-aarch64 is registered, which kiln then uses.
   The handler is registered by this script (root; binfmt_misc is mounted first when
   it is not) before each such build and removed right after it, and it says so.
   Goal: the tracer's step time at most 1.3x the handler's.
2. A native exec-heavy step (3,000 execs of /bin/true on busybox) with this kiln and
   with a kiln built from a revision before the tracer existed (--baseline REV):
   native steps must not be slower for the feature.

Rounds alternate the order of the variants; medians are compared.
"""

import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BINFMT = Path("/proc/sys/fs/binfmt_misc")
HANDLER = "qemu-aarch64"
# Debian's qemu-aarch64 magic and mask (usr/lib/binfmt.d/qemu-aarch64.conf).
MAGIC = r"\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00"
MASK = r"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff"


def emulator_dir(log) -> Path:
    """qemu-aarch64-static as ci/test fetches it (target/qemu-user-static)."""
    d = Path(os.environ.get("KILN_TEST_EMULATOR_DIR", ROOT / "target" / "qemu-user-static"))
    q = d / "qemu-aarch64-static"
    if not q.is_file():
        log("fetching qemu-aarch64-static from Debian's qemu-user-static (not installed)…")
        tmp = Path(subprocess.run(["mktemp", "-d"], capture_output=True, text=True, check=True).stdout.strip())
        subprocess.run(["apt-get", "download", "-qq", "qemu-user-static"], cwd=tmp, check=True)
        deb = next(tmp.glob("qemu-user-static_*.deb"))
        d.mkdir(parents=True, exist_ok=True)
        data = subprocess.run(f"dpkg-deb --fsys-tarfile {deb} | tar -xO ./usr/bin/qemu-aarch64-static",
                              shell=True, capture_output=True, check=True).stdout
        q.write_bytes(data)
        q.chmod(0o755)
        shutil.rmtree(tmp)
    return d


def first_stage(log) -> Path:
    """The arm64 bookworm first stage the tests use (debootstrap --foreign)."""
    d = ROOT / "target" / "test-rootfs" / "bookworm-arm64-foreign"
    if (d / ".kiln-complete").exists():
        return d
    log("debootstrap --foreign --arch=arm64 bookworm…")
    shutil.rmtree(d, ignore_errors=True)
    d.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["debootstrap", "--foreign", "--arch=arm64", "--variant=minbase", "bookworm", str(d),
                    "http://deb.debian.org/debian"], check=True, stdout=subprocess.DEVNULL)
    if (d / "proc").is_symlink():
        (d / "proc").unlink()
        (d / "proc").mkdir()
    for e in (d / "dev").iterdir():
        if not e.is_dir():
            e.unlink()
    (d / ".kiln-complete").write_text("")
    return d


class Handler:
    """A binfmt_misc handler for qemu-aarch64, registered by hand and removed."""

    def __init__(self, qemu: Path, log):
        self.qemu, self.log, self.mounted = qemu, log, False
        if (BINFMT / HANDLER).exists():
            sys.exit(f"{BINFMT / HANDLER} is already registered: remove it first, the tracer runs need none")
        if not (BINFMT / "register").exists():
            subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)], check=True)
            self.mounted = True
            log(f"  mounted binfmt_misc at {BINFMT} (unmounted at the end)")

    def __enter__(self):
        line = f":{HANDLER}:M::{MAGIC}:{MASK}:{self.qemu}:PF"
        (BINFMT / "register").write_text(line)
        return self

    def __exit__(self, *exc):
        (BINFMT / HANDLER).write_text("-1")

    def close(self):
        if self.mounted:
            subprocess.run(["umount", str(BINFMT)], check=False)


def baseline_kiln(rev: str, log) -> str:
    """kiln built (release) from `rev` in a worktree, for the native comparison."""
    wt = ROOT / "target" / "bench-baseline" / "src"
    out = ROOT / "target" / "bench-baseline" / "kiln"
    subprocess.run(["git", "worktree", "remove", "--force", str(wt)], cwd=ROOT, capture_output=True)
    wt.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "worktree", "add", "--detach", str(wt), rev], cwd=ROOT, check=True, capture_output=True)
    try:
        log(f"building the baseline kiln from {rev} (release)…")
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=wt, check=True,
                       env={**os.environ, "CARGO_TARGET_DIR": str(wt.parent / "target")})
        shutil.copy(wt.parent / "target" / "release" / "kiln", out)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(wt)], cwd=ROOT, capture_output=True)
    return str(out)


def run(kiln, work: Path, reg_addr: str, busybox_base: str, timed, run_step, log, rounds=3, baseline=None):
    if os.geteuid() != 0:
        sys.exit("ci/bench --emulated registers a binfmt_misc handler: run it as root")
    results = []
    emu = emulator_dir(log)
    qemu = emu / "qemu-aarch64-static"
    handler = Handler(qemu, log)
    try:
        # The base: the second stage and the downloads, by kiln's tracer (not timed).
        ctx = work / "emu-base"
        ctx.mkdir()
        subprocess.run(["cp", "-a", "--reflink=auto", str(first_stage(log)), str(ctx / "root")], check=True)
        (ctx / "root" / ".kiln-complete").unlink(missing_ok=True)
        (ctx / "Dockerfile").write_text(
            "FROM scratch\nCOPY root/ /\n"
            "RUN /debootstrap/debootstrap --second-stage > /dev/null\n"
            "RUN apt-get update -qq && apt-get install -y -qq --download-only --no-install-recommends python3 > /dev/null\n")
        base = f"{reg_addr}/bench/debian-arm64:latest"
        log("making the arm64 base (second stage and downloads, under kiln's tracer)…")
        t = time.monotonic()
        # chroot isolation, as in a Docker-executor job (the second stage's
        # device-node check fails on the namespaces mode's nodev root).
        subprocess.run([kiln, "build", "--isolation", "chroot", "--platform", "linux/arm64", "--cache=false",
                        "--emulator-dir", str(emu),
                        "--insecure-registry", reg_addr, "--destination", base, "--work-dir", str(work),
                        "--context", str(ctx)], check=True, stdout=subprocess.DEVNULL)
        log(f"  done in {time.monotonic() - t:.1f}s")
        shutil.rmtree(ctx / "root")

        apt = work / "emu-apt"
        apt.mkdir()
        (apt / "Dockerfile").write_text(
            f"FROM {base}\nRUN DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "
            "--no-download python3 > /dev/null && python3 -c 'import platform; print(platform.machine())'\n")
        steps = {"tracer": [], "binfmt": []}
        walls = {"tracer": [], "binfmt": []}
        log("emulated apt-get install python3 (arm64, offline):")
        for rnd in range(rounds):
            order = ["tracer", "binfmt"] if rnd % 2 == 0 else ["binfmt", "tracer"]
            for variant in order:
                cmd = [kiln, "build", "--isolation", "chroot", "--no-push", "--platform", "linux/arm64", "--cache=false",
                       "--emulator-dir", str(emu), "--insecure-registry", reg_addr, "--work-dir", str(work),
                       "--context", str(apt)]
                if variant == "binfmt":
                    log(f"  registering {BINFMT / HANDLER} -> {qemu} (flags PF) for one build")
                    with handler:
                        wall, cpu, rss, err = timed(cmd)
                    log(f"  removed {BINFMT / HANDLER}")
                    want = "by the host's binfmt_misc qemu-aarch64"
                else:
                    wall, cpu, rss, err = timed(cmd)
                    want = "under kiln's exec tracer"
                if want not in err or "aarch64" not in err:
                    sys.exit(f"the {variant} build did not run as expected:\n{err[-3000:]}")
                step, own = run_step(err, "[stage-0 2/2]")
                steps[variant].append(own)
                walls[variant].append(wall)
                log(f"  round {rnd + 1} {variant:<7} step {own:.2f}s (build {wall:.2f}s, cpu {cpu:.2f}s, peak {rss:.0f} MiB)")
        med = {k: statistics.median(v) for k, v in steps.items()}
        for variant, label in [("binfmt", "binfmt_misc handler"), ("tracer", "kiln's exec tracer")]:
            results.append({"scenario": f"emulated apt install, {label} (median of {rounds})", "tool": "emulated",
                            "wall_s": statistics.median(walls[variant]), "step_s": med[variant]})
        log(f"  medians: tracer {med['tracer']:.2f}s, binfmt {med['binfmt']:.2f}s: "
            f"{med['tracer'] / med['binfmt']:.2f}x (goal <= 1.3x)")

        # Native steps, with and without the feature built in.
        if baseline:
            old = baseline_kiln(baseline, log)
            nat = work / "native-exec"
            nat.mkdir()
            (nat / "Dockerfile").write_text(
                f"FROM {busybox_base}\nRUN i=0; while [ $i -lt 3000 ]; do /bin/true; i=$((i+1)); done\n")
            times = {"this kiln": [], f"kiln {baseline}": []}
            log("native step, 3,000 execs:")
            for rnd in range(max(rounds, 5)):
                pair = [("this kiln", kiln), (f"kiln {baseline}", old)]
                for label, binary in (pair if rnd % 2 == 0 else pair[::-1]):
                    wall, cpu, rss, err = timed([binary, "build", "--isolation", "chroot", "--no-push", "--cache=false",
                                                 "--insecure-registry",
                                                 reg_addr, "--work-dir", str(work), "--context", str(nat)])
                    if "exec tracer" in err or "binfmt" in err:
                        sys.exit(f"a native step named an emulator:\n{err[-2000:]}")
                    _, own = run_step(err, "[stage-0 2/2]")
                    times[label].append(own)
                    log(f"  round {rnd + 1} {label:<22} step {own:.2f}s")
            for label, v in times.items():
                results.append({"scenario": f"native 3,000 execs, {label} (median of {len(v)})", "tool": "emulated",
                                "wall_s": None, "step_s": statistics.median(v)})
            log("  medians: " + ", ".join(f"{k} {statistics.median(v):.2f}s" for k, v in times.items()))
    finally:
        if (BINFMT / HANDLER).exists():
            (BINFMT / HANDLER).write_text("-1")
        handler.close()
    return results


def print_results(results):
    rows = [r for r in results if r.get("tool") == "emulated"]
    if not rows:
        return
    print("\nforeign and native RUN steps (the step's own time)")
    for r in rows:
        print(f"{r['scenario']:<60} {r['step_s']:8.2f}s")

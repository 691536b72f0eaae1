//! What runs a RUN step of another architecture than the host's.
//!
//! - The host's own platforms (`amd64` runs `386`, `arm64` runs `arm/v8` and
//!   below, as containerd's matching says) need nothing.
//! - A binfmt_misc handler the host already has for the target (Debian's
//!   `qemu-user-static` registers `qemu-aarch64` and friends) runs every foreign
//!   program of the step when it has the F flag (the interpreter was opened when
//!   it was registered, so it works inside the step's root): kiln uses it and
//!   says so. kiln never registers one: that needs privileges and changes the
//!   whole machine.
//! - Otherwise kiln runs the step's foreign programs under a static qemu-user
//!   itself ([`tracer`]: its exec calls stop for kiln, which puts the emulator
//!   in front), from `--emulator-dir` (`KILN_EMULATOR_DIR`), else from the
//!   emulator job image's `libexec/kiln/emulators` beside kiln, else from
//!   Debian's `qemu-user-static` in `/usr/bin`.
//! - With neither, the step fails before it starts, naming the platform, the
//!   files it looked for, and the ways to provide one.
//!
//! Reading the system is I/O at the edge ([`plan`]); deciding is pure
//! ([`decide`]).

pub mod elf;
pub mod rewrite;
pub mod tracer;

use crate::platform::Platform;
use std::path::{Path, PathBuf};

const BINFMT: &str = "/proc/sys/fs/binfmt_misc";

/// How a step of a platform runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Emulation {
    /// The host runs it.
    Native,
    /// The host's binfmt_misc handler of this name runs its programs.
    HostBinfmt(String),
    /// kiln's exec tracer runs its programs of `arch` (qemu's name) under the
    /// static emulator at `emulator`.
    Traced {
        arch: &'static str,
        emulator: PathBuf,
    },
}

impl Emulation {
    /// How the step line says it, after the platform.
    pub fn describe(&self) -> String {
        match self {
            Emulation::Native => String::new(),
            Emulation::HostBinfmt(h) => format!("by the host's binfmt_misc {h}"),
            Emulation::Traced { emulator, .. } => {
                format!("by {} under kiln's exec tracer", emulator.display())
            }
        }
    }
}

/// What [`plan`] found of the emulators kiln can run itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Emulators {
    /// The first usable one.
    pub found: Option<PathBuf>,
    /// Every file looked for, and why a file that is there was not usable.
    pub looked: Vec<String>,
    /// Whether kiln has its exec tracer on this host (x86-64).
    pub tracer: bool,
}

/// qemu's name for an architecture, as qemu-user-static names its binaries and
/// handlers (`qemu-aarch64`).
pub fn qemu_arch(p: &Platform) -> Option<&'static str> {
    Some(match p.arch.as_str() {
        "amd64" => "x86_64",
        "386" => "i386",
        "arm64" => "aarch64",
        "arm" => "arm",
        "ppc64le" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        "mips64le" => "mips64el",
        "mips64" => "mips64",
        "loong64" => "loongarch64",
        _ => return None,
    })
}

/// Whether a binfmt_misc handler file (`/proc/sys/fs/binfmt_misc/NAME`) is
/// enabled and has the F (fix binary) flag.
pub fn handler_usable(contents: &str) -> bool {
    let enabled = contents.lines().next().map(str::trim) == Some("enabled");
    let fixed = contents
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .is_some_and(|f| f.trim().contains('F'));
    enabled && fixed
}

/// Decide for `target` on `host`, given the handler file's contents (None: no
/// such handler) and the emulators found for kiln's own tracer.
pub fn decide(
    target: &Platform,
    host: &Platform,
    handler: Option<&str>,
    emulators: &Emulators,
) -> Result<Emulation, String> {
    if target.os != host.os || host.candidates().contains(target) {
        // Another OS is not kiln's to emulate; its binaries fail with the kernel's error.
        return Ok(Emulation::Native);
    }
    let arch = qemu_arch(target);
    let name = arch.map(|a| format!("qemu-{a}"));
    if let (Some(n), Some(c)) = (&name, handler) {
        if handler_usable(c) {
            return Ok(Emulation::HostBinfmt(n.clone()));
        }
    }
    if let (Some(arch), Some(emulator), true) = (arch, &emulators.found, emulators.tracer) {
        return Ok(Emulation::Traced {
            arch,
            emulator: emulator.clone(),
        });
    }
    let handler_looked = match &name {
        Some(n) => format!("{BINFMT}/{n} (enabled, with the F flag)"),
        None => format!("a binfmt_misc handler for {}", target.arch),
    };
    let handler_found = match (handler, &name) {
        (Some(_), Some(_)) => "it is there but disabled or without the F flag",
        _ => "there is none",
    };
    let own = match (arch, emulators.tracer) {
        (None, _) => format!("kiln has no qemu name for {}", target.arch),
        (Some(_), false) => "kiln runs emulators itself on x86-64 hosts only".to_string(),
        (Some(_), true) => format!("no static qemu-user at {}", emulators.looked.join(", ")),
    };
    let static_name = name.as_deref().unwrap_or("qemu-ARCH");
    Err(format!(
        "RUN for {target} on this {host} host needs an emulator: kiln looked for {handler_looked}, and {handler_found}; \
         and {own}. Give kiln a static {static_name}-static with --emulator-dir DIR or KILN_EMULATOR_DIR (Debian: qemu-user-static), \
         use kiln's emulator job image, which ships them, register qemu-user-static's binfmt_misc handlers on the host, \
         or build {target} on a native {arch} runner and join the images with `kiln index`",
        arch = target.arch,
    ))
}

/// Where kiln looks for emulators: `dir` when given (`--emulator-dir`,
/// `KILN_EMULATOR_DIR`), else the emulator job image's place beside kiln's
/// binary, then Debian's `qemu-user-static` in `/usr/bin`.
pub fn search_dirs(dir: Option<&Path>) -> Vec<PathBuf> {
    if let Some(d) = dir {
        return vec![d.to_path_buf()];
    }
    let mut dirs = Vec::new();
    // /usr/local/bin/kiln → /usr/local/libexec/kiln/emulators
    if let Some(prefix) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().and_then(Path::parent).map(Path::to_path_buf))
    {
        dirs.push(prefix.join("libexec/kiln/emulators"));
    }
    dirs.push(PathBuf::from("/usr/bin"));
    dirs
}

/// The first usable static emulator for `arch` in `dirs`
/// (`qemu-ARCH-static`, then `qemu-ARCH`), and every file looked at.
pub fn find_emulator(arch: &str, dirs: &[PathBuf]) -> Emulators {
    let mut out = Emulators {
        tracer: !tracer::filter().is_empty(),
        ..Default::default()
    };
    for dir in dirs {
        for name in [format!("qemu-{arch}-static"), format!("qemu-{arch}")] {
            let p = dir.join(&name);
            let mut head = vec![0u8; 4096];
            let read = std::fs::File::open(&p).and_then(|f| {
                use std::os::unix::fs::FileExt;
                let n = f.read_at(&mut head, 0)?;
                head.truncate(n);
                f.metadata()
            });
            match read {
                Err(_) => out.looked.push(p.display().to_string()),
                Ok(md) => {
                    use std::os::unix::fs::PermissionsExt;
                    let why = if !md.is_file() || md.permissions().mode() & 0o111 == 0 {
                        Some("not an executable file")
                    } else if elf::classify(&head) != elf::Exe::Elf(Some(host_qemu_arch())) {
                        Some("not a program for this host")
                    } else if elf::needs_loader(&head) != Some(false) {
                        Some("not static: it needs the host's libraries")
                    } else {
                        None
                    };
                    match why {
                        None if out.found.is_none() => out.found = Some(p),
                        None => {}
                        Some(w) => out.looked.push(format!("{} ({w})", p.display())),
                    }
                }
            }
            if out.found.is_some() {
                return out;
            }
        }
    }
    out
}

/// What the step's own first exec becomes under the emulator.
#[derive(Debug, PartialEq, Eq)]
pub struct FirstExec {
    pub program: String,
    pub argv: Vec<String>,
    /// The emulator link of the program's name it runs through.
    pub link: Option<String>,
}

/// The step's own first exec, decided by kiln before the fork: when `program`
/// (a path inside `rootfs`, relative to `cwd`) is, or is a script run by, an
/// ELF of `arch`, the program and argv that run it under the emulator in the
/// step's /dev. kiln's forked child is not dumpable (it is a copy of kiln), so
/// the tracer could not read its exec call; this one is known in advance.
/// None: run it as it is. With `link` the program's name, to be made in
/// the step's emulator links (see [`tracer::LINKS_DEV_NAME`]).
pub fn first_exec(
    rootfs: &Path,
    cwd: &str,
    program: &str,
    argv: &[String],
    arch: &str,
) -> Option<FirstExec> {
    use rewrite::{Arg, Exec};
    let new = |s: &str| Arg::New(s.as_bytes().to_vec());
    let mut exec = Exec {
        path: new(program),
        argv: argv.iter().map(|a| new(a)).collect(),
    };
    let mut file = program.to_string();
    for _ in 0..=4 {
        let inside = if file.starts_with('/') {
            file.clone()
        } else {
            format!("{}/{file}", cwd.trim_end_matches('/'))
        };
        let rel =
            crate::fs::resolve::resolve(rootfs, &inside, true, crate::fs::resolve::Confine::Clamp)
                .ok()?;
        let mut head = [0u8; elf::HEAD];
        let f = std::fs::File::open(crate::fs::resolve::host_path(rootfs, &rel)).ok()?;
        std::os::unix::fs::FileExt::read_at(&f, &mut head, 0).ok()?;
        match elf::classify(&head) {
            elf::Exe::Elf(Some(a)) if a == arch && !elf::host_runs(a) => {
                let link = tracer::link_for(program.as_bytes());
                let via = match &link {
                    Some((_, full)) => full.clone(),
                    None => tracer::IN_STEP.as_bytes().to_vec(),
                };
                let e = exec.under_emulator(&via);
                let text = |a: &Arg| match a {
                    Arg::New(b) => String::from_utf8_lossy(b).into_owned(),
                    Arg::At(_) => String::new(),
                };
                return Some(FirstExec {
                    program: text(&e.path),
                    argv: e.argv.iter().map(text).collect(),
                    link: link.map(|(name, _)| String::from_utf8_lossy(&name).into_owned()),
                });
            }
            elf::Exe::Script { interp, arg } => {
                exec = exec.through_script(&interp, arg.as_deref());
                file = String::from_utf8_lossy(&interp).into_owned();
            }
            _ => return None,
        }
    }
    None
}

/// qemu's name of the host's own architecture.
fn host_qemu_arch() -> &'static str {
    qemu_arch(&Platform::host()).unwrap_or("unknown")
}

/// [`decide`] with the host's platform, handler and emulators read from the
/// system; `emulator_dir` is `--emulator-dir`.
pub fn plan(target: &Platform, emulator_dir: Option<&Path>) -> Result<Emulation, String> {
    let host = Platform::host();
    if host.candidates().contains(target) || target.os != host.os {
        return Ok(Emulation::Native);
    }
    let arch = qemu_arch(target);
    let contents = arch
        .and_then(|a| std::fs::read_to_string(Path::new(BINFMT).join(format!("qemu-{a}"))).ok());
    let emulators = match arch {
        Some(a) => find_emulator(a, &search_dirs(emulator_dir)),
        None => Emulators::default(),
    };
    decide(target, &host, contents.as_deref(), &emulators)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HANDLER: &str = "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: POCF\noffset 0\nmagic 7f454c460201010000000000000000000200b700\nmask ffffffffffffff00fffffffffffffffffeffffff\n";

    fn p(s: &str) -> Platform {
        Platform::parse(s).unwrap()
    }

    #[test]
    fn the_hosts_own_platforms_need_nothing() {
        let amd = p("linux/amd64");
        let none = Emulators::default();
        assert_eq!(decide(&amd, &amd, None, &none), Ok(Emulation::Native));
        assert_eq!(
            decide(&p("linux/386"), &amd, None, &none),
            Ok(Emulation::Native)
        );
        assert_eq!(
            decide(&p("linux/arm/v7"), &p("linux/arm64"), None, &none),
            Ok(Emulation::Native)
        );
    }

    fn found(path: &str) -> Emulators {
        Emulators {
            found: Some(PathBuf::from(path)),
            looked: vec![],
            tracer: true,
        }
    }

    #[test]
    fn a_fixed_binfmt_handler_is_used_and_named() {
        // Before kiln's own tracer, even with an emulator at hand.
        assert_eq!(
            decide(
                &p("linux/arm64"),
                &p("linux/amd64"),
                Some(HANDLER),
                &found("/e/qemu-aarch64-static")
            ),
            Ok(Emulation::HostBinfmt("qemu-aarch64".into()))
        );
    }

    #[test]
    fn without_a_handler_an_emulator_found_is_run_by_the_tracer() {
        let e = decide(
            &p("linux/arm64"),
            &p("linux/amd64"),
            None,
            &found("/e/qemu-aarch64-static"),
        );
        assert_eq!(
            e,
            Ok(Emulation::Traced {
                arch: "aarch64",
                emulator: PathBuf::from("/e/qemu-aarch64-static")
            })
        );
        assert_eq!(
            e.unwrap().describe(),
            "by /e/qemu-aarch64-static under kiln's exec tracer"
        );
        let v7 = decide(&p("linux/arm/v7"), &p("linux/amd64"), None, &found("/e/q"));
        assert!(matches!(v7, Ok(Emulation::Traced { arch: "arm", .. })));
        // A host without the tracer: the emulator is no use.
        let mut off = found("/e/qemu-aarch64-static");
        off.tracer = false;
        let e = decide(&p("linux/arm64"), &p("linux/amd64"), None, &off).unwrap_err();
        assert!(e.contains("x86-64 hosts only"), "{e}");
    }

    #[test]
    fn without_a_usable_handler_or_emulator_the_error_says_what_and_how() {
        let looked = Emulators {
            found: None,
            looked: vec![
                "/opt/emu/qemu-aarch64-static".into(),
                "/opt/emu/qemu-aarch64 (not static: it needs the host's libraries)".into(),
            ],
            tracer: true,
        };
        let e = decide(&p("linux/arm64"), &p("linux/amd64"), None, &looked).unwrap_err();
        assert!(
            e.contains("RUN for linux/arm64 on this linux/amd64 host"),
            "{e}"
        );
        assert!(e.contains("/proc/sys/fs/binfmt_misc/qemu-aarch64"), "{e}");
        assert!(e.contains("there is none"), "{e}");
        assert!(
            e.contains("/opt/emu/qemu-aarch64-static, /opt/emu/qemu-aarch64 (not static"),
            "{e}"
        );
        assert!(
            e.contains("--emulator-dir DIR or KILN_EMULATOR_DIR")
                && e.contains("emulator job image")
                && e.contains("qemu-user-static")
                && e.contains("kiln index"),
            "{e}"
        );
        let disabled = HANDLER.replacen("enabled", "disabled", 1);
        let e = decide(
            &p("linux/arm64"),
            &p("linux/amd64"),
            Some(&disabled),
            &looked,
        )
        .unwrap_err();
        assert!(e.contains("disabled or without the F flag"), "{e}");
        let no_f = HANDLER.replace("flags: POCF", "flags: OC");
        assert!(decide(&p("linux/arm64"), &p("linux/amd64"), Some(&no_f), &looked).is_err());
    }

    #[test]
    fn only_static_emulators_for_this_host_are_found() {
        let dir = tempfile::tempdir().unwrap();
        let exe = |name: &str, bytes: &[u8]| {
            use std::os::unix::fs::PermissionsExt;
            let p = dir.path().join(name);
            std::fs::write(&p, bytes).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        };
        // kiln's own test binary is dynamic: refused, and said why.
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        exe("qemu-aarch64-static", &me[..8192.min(me.len())]);
        exe("qemu-aarch64", b"#!/bin/sh\n");
        let found = find_emulator("aarch64", &[dir.path().to_path_buf()]);
        assert_eq!(found.found, None);
        assert!(
            found.looked[0]
                .ends_with("qemu-aarch64-static (not static: it needs the host's libraries)"),
            "{:?}",
            found.looked
        );
        assert!(
            found.looked[1].ends_with("qemu-aarch64 (not a program for this host)"),
            "{:?}",
            found.looked
        );
        let missing = find_emulator("riscv64", &[dir.path().to_path_buf()]);
        assert_eq!(missing.looked.len(), 2);
        assert!(missing.looked[0].ends_with("/qemu-riscv64-static"));
    }
}

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
//! - Otherwise the step fails before it starts, naming the platform, the
//!   handler it looked for, and the ways to provide one.
//!
//! Reading the handler is I/O at the edge ([`plan`]); deciding is pure
//! ([`decide`]).

use crate::platform::Platform;
use std::path::Path;

const BINFMT: &str = "/proc/sys/fs/binfmt_misc";

/// How a step of a platform runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Emulation {
    /// The host runs it.
    Native,
    /// The host's binfmt_misc handler of this name runs its programs.
    HostBinfmt(String),
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
/// such handler).
pub fn decide(
    target: &Platform,
    host: &Platform,
    handler: Option<&str>,
) -> Result<Emulation, String> {
    if target.os != host.os || host.candidates().contains(target) {
        // Another OS is not kiln's to emulate; its binaries fail with the kernel's error.
        return Ok(Emulation::Native);
    }
    let name = qemu_arch(target).map(|a| format!("qemu-{a}"));
    match (&name, handler) {
        (Some(n), Some(c)) if handler_usable(c) => Ok(Emulation::HostBinfmt(n.clone())),
        _ => {
            let looked = match &name {
                Some(n) => format!("{BINFMT}/{n} (enabled, with the F flag)"),
                None => format!("a binfmt_misc handler for {}", target.arch),
            };
            let found = match (handler, &name) {
                (Some(_), Some(_)) => "it is there but disabled or without the F flag",
                _ => "there is none",
            };
            Err(format!(
                "RUN for {target} on this {host} host needs an emulator: kiln looked for {looked}, and {found}. \
                 Register qemu-user-static's handlers on the host (Debian: apt-get install qemu-user-static), \
                 or build {target} on a native {arch} runner and join the images with `kiln index`",
                arch = target.arch,
            ))
        }
    }
}

/// [`decide`] with the host's platform and handler read from the system.
pub fn plan(target: &Platform) -> Result<Emulation, String> {
    let host = Platform::host();
    let contents = qemu_arch(target)
        .and_then(|a| std::fs::read_to_string(Path::new(BINFMT).join(format!("qemu-{a}"))).ok());
    decide(target, &host, contents.as_deref())
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
        assert_eq!(decide(&amd, &amd, None), Ok(Emulation::Native));
        assert_eq!(decide(&p("linux/386"), &amd, None), Ok(Emulation::Native));
        assert_eq!(
            decide(&p("linux/arm/v7"), &p("linux/arm64"), None),
            Ok(Emulation::Native)
        );
    }

    #[test]
    fn a_fixed_binfmt_handler_is_used_and_named() {
        assert_eq!(
            decide(&p("linux/arm64"), &p("linux/amd64"), Some(HANDLER)),
            Ok(Emulation::HostBinfmt("qemu-aarch64".into()))
        );
    }

    #[test]
    fn without_a_usable_handler_the_error_says_what_and_how() {
        let e = decide(&p("linux/arm64"), &p("linux/amd64"), None).unwrap_err();
        assert!(
            e.contains("RUN for linux/arm64 on this linux/amd64 host"),
            "{e}"
        );
        assert!(e.contains("/proc/sys/fs/binfmt_misc/qemu-aarch64"), "{e}");
        assert!(e.contains("there is none"), "{e}");
        assert!(
            e.contains("qemu-user-static") && e.contains("kiln index"),
            "{e}"
        );
        let disabled = HANDLER.replacen("enabled", "disabled", 1);
        let e = decide(&p("linux/arm64"), &p("linux/amd64"), Some(&disabled)).unwrap_err();
        assert!(e.contains("disabled or without the F flag"), "{e}");
        let no_f = HANDLER.replace("flags: POCF", "flags: OC");
        assert!(decide(&p("linux/arm64"), &p("linux/amd64"), Some(&no_f)).is_err());
    }
}

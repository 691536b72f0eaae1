//! What the kernel would make of a file given to `execve`, from its first
//! bytes: an ELF program of some architecture, a `#!` script, or neither.
//! Pure: the tracer reads the bytes, this decides.

/// The first bytes the kernel reads of a file it executes (`BINPRM_BUF_SIZE`).
pub const HEAD: usize = 256;

/// A file as `execve` sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exe {
    /// An ELF program for this qemu architecture (`aarch64`, `x86_64`, ...);
    /// None: an ELF of an architecture kiln has no name for.
    Elf(Option<&'static str>),
    /// `#!interpreter [one argument]`.
    Script {
        interp: Vec<u8>,
        arg: Option<Vec<u8>>,
    },
    /// Anything else: the kernel refuses it (ENOEXEC), and shells then run it
    /// as a shell script themselves.
    Other,
}

const EM_386: u16 = 3;
const EM_MIPS: u16 = 8;
const EM_PPC: u16 = 20;
const EM_PPC64: u16 = 21;
const EM_S390: u16 = 22;
const EM_ARM: u16 = 40;
const EM_X86_64: u16 = 62;
const EM_AARCH64: u16 = 183;
const EM_RISCV: u16 = 243;
const EM_LOONGARCH: u16 = 258;

/// qemu's name for the architecture of an ELF header's (class, data, machine):
/// class 1 = 32-bit, 2 = 64-bit; data 1 = little-endian, 2 = big-endian.
fn qemu_name(class: u8, data: u8, machine: u16) -> Option<&'static str> {
    let le = data == 1;
    Some(match (machine, class) {
        (EM_X86_64, 2) => "x86_64",
        (EM_386, 1) => "i386",
        (EM_AARCH64, 2) if le => "aarch64",
        (EM_AARCH64, 2) => "aarch64_be",
        (EM_ARM, 1) if le => "arm",
        (EM_ARM, 1) => "armeb",
        (EM_PPC64, 2) if le => "ppc64le",
        (EM_PPC64, 2) => "ppc64",
        (EM_PPC, 1) => "ppc",
        (EM_S390, 2) => "s390x",
        (EM_RISCV, 2) => "riscv64",
        (EM_RISCV, 1) => "riscv32",
        (EM_MIPS, 2) if le => "mips64el",
        (EM_MIPS, 2) => "mips64",
        (EM_MIPS, 1) if le => "mipsel",
        (EM_MIPS, 1) => "mips",
        (EM_LOONGARCH, 2) => "loongarch64",
        _ => return None,
    })
}

/// Classify a file by its first bytes (up to [`HEAD`]).
pub fn classify(head: &[u8]) -> Exe {
    if head.len() >= 20 && head.starts_with(b"\x7fELF") {
        let (class, data) = (head[4], head[5]);
        let m = [head[18], head[19]];
        let machine = if data == 2 {
            u16::from_be_bytes(m)
        } else {
            u16::from_le_bytes(m)
        };
        return Exe::Elf(qemu_name(class, data, machine));
    }
    if let Some(rest) = head.strip_prefix(b"#!") {
        return shebang(rest);
    }
    Exe::Other
}

/// The kernel's reading of a `#!` line (fs/binfmt_script.c): blanks after
/// `#!` are skipped, the interpreter runs to the next blank, and the rest of
/// the line, trimmed, is one argument. A line that does not end within the
/// buffer still counts when the interpreter's name does. The kernel's buffer
/// is zero-filled past a short file's end, so a NUL ends the line too.
fn shebang(rest: &[u8]) -> Exe {
    let end = rest.iter().position(|&b| b == b'\n' || b == 0);
    let line = &rest[..end.unwrap_or(rest.len())];
    let blank = |b: &u8| *b == b' ' || *b == b'\t';
    let start = line.iter().position(|b| !blank(b)).unwrap_or(line.len());
    let line = &line[start..];
    let name_end = line.iter().position(blank).unwrap_or(line.len());
    if name_end == 0 || (end.is_none() && name_end == line.len()) {
        // No interpreter, or its name may be cut off by the buffer's end.
        return Exe::Other;
    }
    let interp = line[..name_end].to_vec();
    let tail = &line[name_end..];
    let a = tail.iter().position(|b| !blank(b));
    let z = tail.iter().rposition(|b| !blank(b));
    let arg = match (a, z) {
        (Some(a), Some(z)) => Some(tail[a..=z].to_vec()),
        _ => None,
    };
    Exe::Script { interp, arg }
}

/// Whether a 64-bit little-endian ELF file, given its first bytes (its
/// header and program headers), asks for a program interpreter (a dynamic
/// loader): None when the bytes do not say. An emulator kiln runs inside a
/// step's root must be static, since the root has another architecture's
/// libraries or none.
pub fn needs_loader(data: &[u8]) -> Option<bool> {
    if data.len() < 64 || !data.starts_with(b"\x7fELF") || data[4] != 2 || data[5] != 1 {
        return None;
    }
    let u16_at = |o: usize| u16::from_le_bytes([data[o], data[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(data[32..40].try_into().ok()?) as usize;
    let (size, count) = (u16_at(54), u16_at(56));
    if size < 4 {
        return None;
    }
    for i in 0..count {
        let at = phoff.checked_add(i.checked_mul(size)?)?;
        let kind = data.get(at..at + 4)?;
        if u32::from_le_bytes(kind.try_into().ok()?) == 3 {
            return Some(true); // PT_INTERP
        }
    }
    Some(false)
}

/// Whether the host runs programs of this qemu architecture itself.
pub fn host_runs(arch: &str) -> bool {
    if cfg!(target_arch = "x86_64") {
        matches!(arch, "x86_64" | "i386")
    } else if cfg!(target_arch = "aarch64") {
        matches!(arch, "aarch64" | "arm")
    } else {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elf(class: u8, data: u8, machine: u16) -> Vec<u8> {
        let mut h = vec![0u8; 64];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = class;
        h[5] = data;
        let m = if data == 2 {
            machine.to_be_bytes()
        } else {
            machine.to_le_bytes()
        };
        h[18..20].copy_from_slice(&m);
        h
    }

    #[test]
    fn elf_headers_name_their_architecture() {
        assert_eq!(classify(&elf(2, 1, 183)), Exe::Elf(Some("aarch64")));
        assert_eq!(classify(&elf(2, 1, 62)), Exe::Elf(Some("x86_64")));
        assert_eq!(classify(&elf(1, 1, 3)), Exe::Elf(Some("i386")));
        assert_eq!(classify(&elf(1, 1, 40)), Exe::Elf(Some("arm")));
        assert_eq!(classify(&elf(2, 1, 21)), Exe::Elf(Some("ppc64le")));
        assert_eq!(classify(&elf(2, 2, 22)), Exe::Elf(Some("s390x")));
        assert_eq!(classify(&elf(2, 1, 243)), Exe::Elf(Some("riscv64")));
        assert_eq!(classify(&elf(2, 1, 9999)), Exe::Elf(None));
        // A cut header is not an ELF program.
        assert_eq!(classify(&elf(2, 1, 183)[..10]), Exe::Other);
    }

    #[test]
    fn shebang_lines_are_read_as_the_kernel_reads_them() {
        assert_eq!(
            classify(b"#!/bin/sh\necho hi\n"),
            Exe::Script {
                interp: b"/bin/sh".to_vec(),
                arg: None
            }
        );
        assert_eq!(
            classify(b"#! /usr/bin/env  python3 -u \t\nprint()\n"),
            Exe::Script {
                interp: b"/usr/bin/env".to_vec(),
                arg: Some(b"python3 -u".to_vec())
            }
        );
        assert_eq!(
            classify(b"#!/bin/bash\t-e"),
            Exe::Script {
                interp: b"/bin/bash".to_vec(),
                arg: Some(b"-e".to_vec())
            }
        );
        // No newline within the buffer and nothing after the name: the name
        // may be cut, so the kernel gives up.
        assert_eq!(classify(b"#!/usr/bin/some-long-na"), Exe::Other);
        assert_eq!(
            classify(b"#!/bin/sh\0\0\0"),
            Exe::Script {
                interp: b"/bin/sh".to_vec(),
                arg: None
            }
        );
        assert_eq!(classify(b"#!\n"), Exe::Other);
        assert_eq!(classify(b"echo hi\n"), Exe::Other);
        assert_eq!(classify(b""), Exe::Other);
    }

    fn with_phdrs(types: &[u32]) -> Vec<u8> {
        let mut h = elf(2, 1, 62);
        h[32..40].copy_from_slice(&64u64.to_le_bytes());
        h[54..56].copy_from_slice(&56u16.to_le_bytes());
        h[56..58].copy_from_slice(&(types.len() as u16).to_le_bytes());
        for t in types {
            let mut ph = vec![0u8; 56];
            ph[..4].copy_from_slice(&t.to_le_bytes());
            h.extend(ph);
        }
        h
    }

    #[test]
    fn a_dynamic_program_is_told_from_a_static_one() {
        assert_eq!(needs_loader(&with_phdrs(&[6, 3, 1])), Some(true));
        assert_eq!(needs_loader(&with_phdrs(&[1, 1, 4])), Some(false));
        // Program headers past the bytes read: unknown.
        let cut = with_phdrs(&[1, 3]);
        assert_eq!(needs_loader(&cut[..100]), None);
        assert_eq!(needs_loader(b"#!/bin/sh\n"), None);
    }

    #[test]
    fn the_host_runs_its_own_architectures() {
        if cfg!(target_arch = "x86_64") {
            assert!(host_runs("x86_64") && host_runs("i386"));
            assert!(!host_runs("aarch64"));
        }
    }
}

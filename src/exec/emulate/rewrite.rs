//! The `execve` a foreign program's exec becomes: the kernel's own rewriting
//! of a `#!` script, then qemu-user in front of the ELF program at the end,
//! laid out as bytes for the traced process's memory. Pure: the tracer reads
//! the call and writes the result.

/// One string of the call: already in the process's memory at this address,
/// or new bytes (without the NUL) to write there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    At(u64),
    New(Vec<u8>),
}

/// An exec call: the file to run and its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exec {
    pub path: Arg,
    pub argv: Vec<Arg>,
}

impl Exec {
    /// What the kernel runs for a `#!interp arg` script: the interpreter, with
    /// the interpreter's name, the argument, the script's path and the
    /// script's arguments but its argv[0] (fs/binfmt_script.c).
    pub fn through_script(self, interp: &[u8], arg: Option<&[u8]>) -> Exec {
        let mut argv = vec![Arg::New(interp.to_vec())];
        argv.extend(arg.map(|a| Arg::New(a.to_vec())));
        argv.push(self.path);
        argv.extend(self.argv.into_iter().skip(1));
        Exec {
            path: Arg::New(interp.to_vec()),
            argv,
        }
    }

    /// The same program run by qemu-user at `emulator` (a path the process
    /// can open): `emulator -0 ARGV0 PATH ARGS...`, so that the program sees
    /// its own argv[0], as binfmt_misc's P flag gives it.
    pub fn under_emulator(self, emulator: &[u8]) -> Exec {
        let mut it = self.argv.into_iter();
        let argv0 = it.next().unwrap_or_else(|| self.path.clone());
        let mut argv = vec![
            Arg::New(emulator.to_vec()),
            Arg::New(b"-0".to_vec()),
            argv0,
            self.path,
        ];
        argv.extend(it);
        Exec {
            path: Arg::New(emulator.to_vec()),
            argv,
        }
    }
}

/// An [`Exec`] placed in memory below an address.
#[derive(Debug, PartialEq, Eq)]
pub struct Layout {
    /// Where `bytes` go.
    pub base: u64,
    pub bytes: Vec<u8>,
    /// The addresses to pass as execve's path and argv.
    pub path: u64,
    pub argv: u64,
}

/// Lay `exec` out in the `bytes` that end at or below `top` (new strings,
/// then the NULL-terminated pointer array, 16-byte aligned). None when it
/// would not fit above address 0.
pub fn layout(exec: &Exec, top: u64) -> Option<Layout> {
    let strings: usize = exec
        .argv
        .iter()
        .chain(std::iter::once(&exec.path))
        .map(|a| match a {
            Arg::New(b) => b.len() + 1,
            Arg::At(_) => 0,
        })
        .sum();
    let strings = strings.next_multiple_of(8);
    let size = (strings + 8 * (exec.argv.len() + 1)) as u64;
    let base = top.checked_sub(size)? & !15;
    let mut bytes = Vec::with_capacity((top - base) as usize);
    let place = |a: &Arg, bytes: &mut Vec<u8>| -> u64 {
        match a {
            Arg::At(addr) => *addr,
            Arg::New(b) => {
                let at = base + bytes.len() as u64;
                bytes.extend_from_slice(b);
                bytes.push(0);
                at
            }
        }
    };
    let path = place(&exec.path, &mut bytes);
    let ptrs: Vec<u64> = exec.argv.iter().map(|a| place(a, &mut bytes)).collect();
    bytes.resize(strings, 0);
    let argv = base + bytes.len() as u64;
    for p in ptrs.iter().chain(std::iter::once(&0)) {
        bytes.extend_from_slice(&p.to_ne_bytes());
    }
    Some(Layout {
        base,
        bytes,
        path,
        argv,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(s: &str) -> Arg {
        Arg::New(s.as_bytes().to_vec())
    }

    #[test]
    fn a_program_runs_under_the_emulator_with_its_own_argv0() {
        let e = Exec {
            path: Arg::At(0x1000),
            argv: vec![Arg::At(0x2000), Arg::At(0x2010)],
        }
        .under_emulator(b"/dev/.kiln-qemu");
        assert_eq!(e.path, new("/dev/.kiln-qemu"));
        assert_eq!(
            e.argv,
            vec![
                new("/dev/.kiln-qemu"),
                new("-0"),
                Arg::At(0x2000),
                Arg::At(0x1000),
                Arg::At(0x2010)
            ]
        );
        // No argv at all: the path stands in for argv[0].
        let e = Exec {
            path: Arg::At(0x1000),
            argv: vec![],
        }
        .under_emulator(b"/q");
        assert_eq!(e.argv[2], Arg::At(0x1000));
    }

    #[test]
    fn a_script_runs_its_interpreter_as_the_kernel_does() {
        // `./build.sh a` with `#!/bin/sh -e`, itself under the emulator.
        let e = Exec {
            path: Arg::At(0x1000),
            argv: vec![Arg::At(0x2000), Arg::At(0x2010)],
        }
        .through_script(b"/bin/sh", Some(b"-e"))
        .under_emulator(b"/q");
        assert_eq!(e.path, new("/q"));
        assert_eq!(
            e.argv,
            vec![
                new("/q"),
                new("-0"),
                new("/bin/sh"),
                new("/bin/sh"),
                new("-e"),
                Arg::At(0x1000),
                Arg::At(0x2010)
            ]
        );
    }

    #[test]
    fn the_layout_fits_below_the_top_and_points_at_itself() {
        let e = Exec {
            path: new("/q"),
            argv: vec![new("/q"), new("-0"), Arg::At(0x2000)],
        };
        let top = 0x7fff_0000_0101;
        let l = layout(&e, top).unwrap();
        assert_eq!(l.base % 16, 0);
        assert!(l.base + l.bytes.len() as u64 <= top);
        let at = |addr: u64| (addr - l.base) as usize;
        assert_eq!(&l.bytes[at(l.path)..at(l.path) + 3], b"/q\0");
        let ptr = |i: usize| {
            let o = at(l.argv) + 8 * i;
            u64::from_ne_bytes(l.bytes[o..o + 8].try_into().unwrap())
        };
        assert_eq!(&l.bytes[at(ptr(0))..at(ptr(0)) + 3], b"/q\0");
        assert_eq!(&l.bytes[at(ptr(1))..at(ptr(1)) + 3], b"-0\0");
        assert_eq!(ptr(2), 0x2000);
        assert_eq!(ptr(3), 0);
        assert_eq!(at(l.argv) + 32, l.bytes.len());
        assert_eq!(l.argv % 8, 0);
        assert!(layout(&e, 16).is_none());
    }
}

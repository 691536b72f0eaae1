//! Rootless builds with the uid/gid ranges the user has (`/etc/subuid`,
//! `/etc/subgid`).
//!
//! A non-root user's own user namespace can map only that user's uid. To give RUN
//! steps real users (`USER 1000`, `chown`, files owned by daemons' accounts), kiln
//! re-executes itself once, at the start of `kiln build`, inside a user namespace
//! whose maps the setuid helpers `newuidmap`/`newgidmap` write:
//!
//! ```text
//! inside 0            -> the caller's uid (gid)
//! inside 1..=count    -> the first subordinate range, then the next ones
//! ```
//!
//! Inside, kiln is root of that namespace: extraction chowns for real, RUN uses
//! mount and PID namespaces as in the `namespaces` mode, and snapshots read owners
//! from disk. Outputs, cache and registry traffic are unchanged: the caller's uid is
//! root inside, so everything kiln writes outside the work dir belongs to the caller.
//! Without ranges or helpers kiln stays in the single-uid `rootless` mode.

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Set in the re-executed kiln; holds a readable description of the maps.
pub const ENV: &str = "KILN_USERNS";

/// When kiln runs inside the namespace it set up: the maps, for the log.
pub fn inside() -> Option<String> {
    std::env::var(ENV)
        .ok()
        .filter(|_| nix::unistd::Uid::effective().is_root())
}

/// One `newuidmap` triple: inside, outside, count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    pub inside: u32,
    pub outside: u32,
    pub count: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Maps {
    pub uid: Vec<Extent>,
    pub gid: Vec<Extent>,
}

impl Maps {
    fn args(extents: &[Extent]) -> Vec<String> {
        extents
            .iter()
            .flat_map(|e| [e.inside, e.outside, e.count])
            .map(|n| n.to_string())
            .collect()
    }

    /// The highest uid that exists inside, for messages.
    pub fn describe(&self) -> String {
        let top = |ex: &[Extent]| ex.iter().map(|e| e.inside + e.count - 1).max().unwrap_or(0);
        format!(
            "uids 0-{}, gids 0-{} from /etc/subuid and /etc/subgid",
            top(&self.uid),
            top(&self.gid)
        )
    }
}

/// The ranges `/etc/subuid`-format `text` gives the user `name` (or numeric `id`).
pub fn ranges(text: &str, name: &str, id: u32) -> Vec<(u32, u32)> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            if l.is_empty() || l.starts_with('#') {
                return None;
            }
            let mut f = l.split(':');
            let who = f.next()?;
            let start: u32 = f.next()?.trim().parse().ok()?;
            let count: u32 = f.next()?.trim().parse().ok()?;
            (count > 0 && (who == name || who.parse::<u32>().ok() == Some(id)))
                .then_some((start, count))
        })
        .collect()
}

/// The maps: own id to 0, then each subordinate range from 1 upward.
pub fn extents(own: u32, sub: &[(u32, u32)]) -> Vec<Extent> {
    let mut out = vec![Extent {
        inside: 0,
        outside: own,
        count: 1,
    }];
    let mut next = 1u32;
    for &(start, count) in sub {
        // Skip a range holding our own id (already mapped) rather than map it twice.
        if (start..start.saturating_add(count)).contains(&own) {
            continue;
        }
        out.push(Extent {
            inside: next,
            outside: start,
            count,
        });
        next = next.saturating_add(count);
    }
    out
}

/// The name of `uid` in passwd-format text.
fn user_name(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        (f.nth(1)?.parse::<u32>().ok()? == uid && !name.is_empty()).then(|| name.to_string())
    })
}

fn helper(name: &str) -> Option<PathBuf> {
    ["/usr/bin", "/bin", "/usr/sbin", "/sbin", "/usr/local/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
}

/// The maps this user can have, or why there are none.
pub fn plan() -> Result<(Maps, PathBuf, PathBuf), String> {
    let uid = nix::unistd::Uid::effective();
    let gid = nix::unistd::Gid::effective();
    let read = |f: &str| std::fs::read_to_string(f).unwrap_or_default();
    // /etc/passwd is read directly, not through NSS: the static kiln of the job
    // image has no NSS modules to load. /etc/subuid may name the user by uid.
    let name = user_name(&read("/etc/passwd"), uid.as_raw()).unwrap_or_else(|| uid.to_string());
    let subuid = ranges(&read("/etc/subuid"), &name, uid.as_raw());
    let subgid = ranges(&read("/etc/subgid"), &name, uid.as_raw());
    if subuid.is_empty() || subgid.is_empty() {
        return Err(format!(
            "no /etc/subuid and /etc/subgid ranges for {name}; add them (usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {name})"
        ));
    }
    let (Some(newuidmap), Some(newgidmap)) = (helper("newuidmap"), helper("newgidmap")) else {
        return Err(
            "newuidmap/newgidmap are not installed (Debian: apt-get install uidmap)".into(),
        );
    };
    Ok((
        Maps {
            uid: extents(uid.as_raw(), &subuid),
            gid: extents(gid.as_raw(), &subgid),
        },
        newuidmap,
        newgidmap,
    ))
}

fn cloexec_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from)
}

/// Run this kiln again with `args` inside a user namespace with `maps`; returns its
/// exit code. `Err` when the namespace could not be set up (nothing ran yet).
pub fn reexec(
    maps: &Maps,
    newuidmap: &Path,
    newgidmap: &Path,
    args: Vec<OsString>,
) -> io::Result<i32> {
    let exe = std::env::current_exe()?;
    let (ready_r, ready_w) = cloexec_pipe()?;
    let (go_r, go_w) = cloexec_pipe()?;
    let (ready_w_fd, go_r_fd, go_w_fd, ready_r_fd) = (
        ready_w.as_raw_fd(),
        go_r.as_raw_fd(),
        go_w.as_raw_fd(),
        ready_r.as_raw_fd(),
    );
    let mut cmd = Command::new(exe);
    cmd.args(args).env(ENV, maps.describe());
    // SAFETY: runs in the forked child before exec; only raw syscalls on integers
    // and stack buffers (no allocation, no locks).
    unsafe {
        cmd.pre_exec(move || {
            libc::close(go_w_fd);
            libc::close(ready_r_fd);
            // newuidmap checks that /proc/<pid> is ours: not so while kiln's
            // non-dumpable flag, inherited by this fork, makes it root's. The
            // re-executed kiln sets it again at its start.
            libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0);
            if libc::unshare(libc::CLONE_NEWUSER) != 0 {
                return Err(io::Error::last_os_error());
            }
            let pid = libc::getpid().to_ne_bytes();
            if libc::write(ready_w_fd, pid.as_ptr().cast(), pid.len()) != pid.len() as isize {
                return Err(io::Error::last_os_error());
            }
            let mut go = [0u8; 1];
            if libc::read(go_r_fd, go.as_mut_ptr().cast(), 1) != 1 {
                return Err(io::Error::other("the user namespace maps were not written"));
            }
            Ok(())
        });
    }
    // `spawn` returns only once the child has exec'd, which it does after the maps
    // are written: spawn on a thread, write the maps from here.
    let spawner = std::thread::spawn(move || {
        let r = cmd.spawn();
        drop((ready_w, go_r));
        r
    });
    let mut pid = [0u8; 4];
    let got = std::fs::File::from(ready_r).read_exact(&mut pid);
    let mapped = got.and_then(|_| {
        let pid = i32::from_ne_bytes(pid).to_string();
        for (tool, ext) in [(newuidmap, &maps.uid), (newgidmap, &maps.gid)] {
            let out = Command::new(tool)
                .arg(&pid)
                .args(Maps::args(ext))
                .output()?;
            if !out.status.success() {
                return Err(io::Error::other(format!(
                    "{} failed: {}",
                    tool.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
        }
        Ok(())
    });
    let mut go = std::fs::File::from(go_w);
    if mapped.is_ok() {
        go.write_all(&[1])?;
    }
    drop(go);
    let child = spawner
        .join()
        .map_err(|_| io::Error::other("spawning kiln in a user namespace panicked"))?;
    let mut child = match (child, mapped) {
        (Ok(c), Ok(())) => c,
        (Err(e), Ok(())) => return Err(e),
        (Ok(mut c), Err(e)) => {
            let _ = c.kill();
            let _ = c.wait();
            return Err(e);
        }
        // The child stopped before telling its pid: its error says why.
        (Err(ce), Err(me)) if me.kind() == io::ErrorKind::UnexpectedEof => return Err(ce),
        (Err(_), Err(me)) => return Err(me),
    };
    let status = child.wait()?;
    use std::os::unix::process::ExitStatusExt;
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_match_name_or_uid_and_skip_junk() {
        let text = "# comment\nalice:100000:65536\nbob:165536:65536\n1001:300000:10\nalice:400000:5\nbad line\ncarol:1:0\n";
        assert_eq!(
            ranges(text, "alice", 1000),
            vec![(100000, 65536), (400000, 5)]
        );
        assert_eq!(ranges(text, "dave", 1001), vec![(300000, 10)]);
        assert!(ranges(text, "carol", 5).is_empty());
    }

    #[test]
    fn user_names_come_from_passwd_text() {
        let passwd =
            "root:x:0:0:root:/root:/bin/sh\n# junk\nbad\nalice:x:1000:1000::/home/alice:/bin/sh\n";
        assert_eq!(user_name(passwd, 1000).as_deref(), Some("alice"));
        assert_eq!(user_name(passwd, 0).as_deref(), Some("root"));
        assert_eq!(user_name(passwd, 7), None);
    }

    #[test]
    fn extents_put_own_id_at_zero_then_ranges() {
        let ex = extents(1000, &[(100000, 65536), (400000, 5)]);
        assert_eq!(
            ex,
            vec![
                Extent {
                    inside: 0,
                    outside: 1000,
                    count: 1
                },
                Extent {
                    inside: 1,
                    outside: 100000,
                    count: 65536
                },
                Extent {
                    inside: 65537,
                    outside: 400000,
                    count: 5
                },
            ]
        );
        assert_eq!(
            Maps::args(&ex[..2]),
            ["0", "1000", "1", "1", "100000", "65536"]
        );
        // A range that holds our own id is not mapped twice.
        assert_eq!(extents(1000, &[(900, 200)]).len(), 1);
    }
}

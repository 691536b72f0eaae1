//! rpm packages: the sqlite rpmdb (`usr/lib/sysimage/rpm/rpmdb.sqlite`, or
//! `var/lib/rpm/rpmdb.sqlite` before Fedora 36 and on EL 9), whose `Packages`
//! table holds one rpm header blob per installed package.
//!
//! The database comes from the image, so it is opened as SQLite advises for
//! untrusted files: in memory and read-only, defensive, no trusted schema, no
//! views or triggers, and a bound on the work a query may do. rpm checkpoints
//! its write-ahead log when it closes the database, so the main file holds
//! every committed package; a `-wal` file left beside it is not read.
//!
//! rpm's older formats (Berkeley DB `Packages` on EL 7 and 8, `Packages.db` on
//! SUSE) are recognised and named as unread rather than silently skipped.

use super::{Ecosystem, Found};
use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags};

/// Where rpm keeps its sqlite database.
pub const SQLITE_PATHS: [&str; 2] = [
    "usr/lib/sysimage/rpm/rpmdb.sqlite",
    "var/lib/rpm/rpmdb.sqlite",
];

/// rpm databases in formats not read: (path, what it is).
pub const OTHER_FORMATS: [(&str, &str); 4] = [
    ("var/lib/rpm/Packages", "rpm's Berkeley DB database"),
    (
        "usr/lib/sysimage/rpm/Packages",
        "rpm's Berkeley DB database",
    ),
    ("var/lib/rpm/Packages.db", "rpm's ndb database"),
    ("usr/lib/sysimage/rpm/Packages.db", "rpm's ndb database"),
];

/// SQLite virtual-machine steps a query may take before it is stopped (a
/// crafted schema must not hang the build); a real rpmdb of thousands of
/// packages needs a few hundred thousand.
const MAX_STEPS: u64 = 50_000_000;

// Header tags (rpmtag.h) and types.
const TAG_NAME: u32 = 1000;
const TAG_VERSION: u32 = 1001;
const TAG_RELEASE: u32 = 1002;
const TAG_EPOCH: u32 = 1003;
const TAG_LICENSE: u32 = 1014;
const TAG_ARCH: u32 = 1022;
const TAG_SOURCERPM: u32 = 1044;
const TYPE_INT32: u32 = 4;
const TYPE_STRING: u32 = 6;
const TYPE_STRING_ARRAY: u32 = 8;
const TYPE_I18NSTRING: u32 = 9;

/// rpm's own bounds on a header (header.c): at most this many entries and
/// data bytes.
const MAX_ENTRIES: usize = 0xffff;
const MAX_DATA: usize = 256 << 20;

/// The packages of an rpmdb.sqlite file, or why it could not be read.
pub fn parse(db: &[u8]) -> Result<Vec<Found>, String> {
    let blobs =
        packages_blobs(db).map_err(|e| format!("not a readable rpm sqlite database: {e}"))?;
    let mut out = Vec::with_capacity(blobs.len());
    for (hnum, blob) in blobs {
        match header(&blob) {
            Ok(Some(f)) => out.push(f),
            Ok(None) => {}
            Err(e) => return Err(format!("package header {hnum}: {e}")),
        }
    }
    Ok(out)
}

/// Every (hnum, blob) of the `Packages` table.
fn packages_blobs(db: &[u8]) -> rusqlite::Result<Vec<(i64, Vec<u8>)>> {
    // rpm leaves the file in WAL mode (format bytes 2, 2); an in-memory copy
    // has no log, so read it as a rollback-journal database (1, 1). SQLite
    // copies the bytes into its own memory: the header is patched on the way.
    let wal = db.len() > 19 && db[18] == 2 && db[19] == 2;
    let (head, rest) = db.split_at(if wal { 20 } else { 0 });
    let patched: Vec<u8> = match wal {
        true => [&head[..18], &[1, 1]].concat(),
        false => vec![],
    };
    let mut conn = Connection::open_in_memory_with_flags(
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    for (setting, on) in [
        (DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true),
        (DbConfig::SQLITE_DBCONFIG_TRUSTED_SCHEMA, false),
        (DbConfig::SQLITE_DBCONFIG_ENABLE_VIEW, false),
        (DbConfig::SQLITE_DBCONFIG_ENABLE_TRIGGER, false),
    ] {
        conn.set_db_config(setting, on)?;
    }
    let mut steps = 0u64;
    conn.progress_handler(
        1000,
        Some(move || {
            steps += 1000;
            steps > MAX_STEPS
        }),
    )?;
    let bytes = std::io::Read::chain(&patched[..], rest);
    conn.deserialize_read_exact(rusqlite::MAIN_DB, bytes, db.len(), true)?;
    conn.pragma_update(None, "cell_size_check", true)?;
    let kind: String = conn.query_row(
        "SELECT type FROM sqlite_schema WHERE name = 'Packages'",
        [],
        |r| r.get(0),
    )?;
    if kind != "table" {
        return Err(rusqlite::Error::InvalidQuery);
    }
    let mut stmt = conn.prepare("SELECT hnum, blob FROM Packages ORDER BY hnum")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))?;
    rows.collect()
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// One entry of a header's index: (type, offset into the data, count).
struct Tag {
    kind: u32,
    offset: usize,
}

/// A package from one rpm header blob (as rpmdb stores it: entry count and
/// data length, big-endian, then 16-byte index entries, then the data). None
/// for rpm's pseudo-packages of imported signing keys (`gpg-pubkey`).
fn header(blob: &[u8]) -> Result<Option<Found>, String> {
    let il = be32(blob, 0).ok_or("truncated")? as usize;
    let dl = be32(blob, 4).ok_or("truncated")? as usize;
    if il > MAX_ENTRIES || dl > MAX_DATA {
        return Err(format!("{il} entries, {dl} data bytes: over rpm's limits"));
    }
    let data_at = 8 + il * 16;
    let data = blob
        .get(data_at..data_at + dl)
        .ok_or("shorter than its index says")?;
    let find = |want: u32| -> Option<Tag> {
        (0..il).find_map(|i| {
            let e = 8 + i * 16;
            (be32(blob, e)? == want).then_some(())?;
            Some(Tag {
                kind: be32(blob, e + 4)?,
                offset: be32(blob, e + 8)? as usize,
            })
        })
    };
    let string = |tag: u32| -> Option<String> {
        let t = find(tag)?;
        if !matches!(t.kind, TYPE_STRING | TYPE_STRING_ARRAY | TYPE_I18NSTRING) {
            return None;
        }
        // The first string (an i18n string's is the C locale's).
        let rest = data.get(t.offset..)?;
        let end = memchr::memchr(0, rest)?;
        Some(String::from_utf8_lossy(&rest[..end]).into_owned()).filter(|s| !s.is_empty())
    };
    let epoch = find(TAG_EPOCH)
        .filter(|t| t.kind == TYPE_INT32)
        .and_then(|t| be32(data, t.offset));
    let (Some(name), Some(version)) = (string(TAG_NAME), string(TAG_VERSION)) else {
        return Err("no name or version".into());
    };
    if name == "gpg-pubkey" {
        return Ok(None);
    }
    let evr = match (epoch, string(TAG_RELEASE)) {
        (Some(e), Some(r)) => format!("{e}:{version}-{r}"),
        (None, Some(r)) => format!("{version}-{r}"),
        (Some(e), None) => format!("{e}:{version}"),
        (None, None) => version,
    };
    Ok(Some(Found {
        ecosystem: Ecosystem::Rpm,
        namespace: String::new(),
        name,
        version: evr,
        license: string(TAG_LICENSE),
        arch: string(TAG_ARCH),
        source: string(TAG_SOURCERPM),
    }))
}

/// An rpm version as purl-spec writes it: `version-release`, the epoch a
/// qualifier.
pub fn purl_version(evr: &str) -> (&str, Option<&str>) {
    match evr.split_once(':') {
        Some((e, vr)) if !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit()) => (vr, Some(e)),
        _ => (evr, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header blob with these (tag, type, data) entries.
    fn blob(entries: &[(u32, u32, Vec<u8>)]) -> Vec<u8> {
        let mut index = vec![];
        let mut data = vec![];
        for (tag, kind, bytes) in entries {
            for v in [*tag, *kind, data.len() as u32, 1] {
                index.extend_from_slice(&v.to_be_bytes());
            }
            data.extend_from_slice(bytes);
        }
        let mut out = vec![];
        out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend(index);
        out.extend(data);
        out
    }

    fn s(v: &str) -> Vec<u8> {
        let mut b = v.as_bytes().to_vec();
        b.push(0);
        b
    }

    #[test]
    fn a_header_gives_name_epoch_version_release_arch_licence_and_source() {
        let b = blob(&[
            (TAG_NAME, TYPE_STRING, s("bash")),
            (TAG_VERSION, TYPE_STRING, s("5.2.26")),
            (TAG_RELEASE, TYPE_STRING, s("3.fc40")),
            (TAG_EPOCH, TYPE_INT32, 1u32.to_be_bytes().to_vec()),
            (TAG_LICENSE, TYPE_STRING, s("GPL-3.0-or-later")),
            (TAG_ARCH, TYPE_STRING, s("x86_64")),
            (TAG_SOURCERPM, TYPE_STRING, s("bash-5.2.26-3.fc40.src.rpm")),
        ]);
        let f = header(&b).unwrap().unwrap();
        assert_eq!(f.name, "bash");
        assert_eq!(f.version, "1:5.2.26-3.fc40");
        assert_eq!(purl_version(&f.version), ("5.2.26-3.fc40", Some("1")));
        assert_eq!(f.arch.as_deref(), Some("x86_64"));
        assert_eq!(f.license.as_deref(), Some("GPL-3.0-or-later"));
        assert_eq!(f.source.as_deref(), Some("bash-5.2.26-3.fc40.src.rpm"));
    }

    #[test]
    fn signing_keys_are_no_packages_and_bad_headers_are_errors() {
        let key = blob(&[
            (TAG_NAME, TYPE_STRING, s("gpg-pubkey")),
            (TAG_VERSION, TYPE_STRING, s("a15b79cc")),
        ]);
        assert_eq!(header(&key), Ok(None));
        let mut cut = blob(&[(TAG_NAME, TYPE_STRING, s("x"))]);
        cut.truncate(cut.len() - 1);
        assert!(header(&cut).is_err());
        assert!(header(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]).is_err());
        assert!(header(&[0, 0]).is_err());
        // An offset past the data, and a string without its NUL.
        let mut wild = blob(&[(TAG_NAME, TYPE_STRING, s("x"))]);
        wild[16..20].copy_from_slice(&1000u32.to_be_bytes());
        assert!(header(&wild).is_err());
        let open = blob(&[
            (TAG_NAME, TYPE_STRING, s("x")),
            (TAG_VERSION, TYPE_STRING, b"1".to_vec()),
        ]);
        assert!(header(&open).is_err());
    }

    #[test]
    fn what_is_no_sqlite_database_is_an_error_not_a_panic() {
        assert!(parse(b"").is_err());
        assert!(parse(b"SQLite format 3\0 and then nothing").is_err());
        assert!(parse(&[0u8; 4096]).is_err());
    }

    #[test]
    fn a_database_without_a_packages_table_is_an_error() {
        let mut c = Connection::open_in_memory().unwrap();
        c.execute_batch(
            "CREATE TABLE t(x); CREATE VIEW Packages AS SELECT 1 AS hnum, x'00' AS blob",
        )
        .unwrap();
        let bytes = c.serialize(rusqlite::MAIN_DB).unwrap().to_vec();
        let e = parse(&bytes).unwrap_err();
        assert!(e.contains("not a readable rpm sqlite database"), "{e}");
    }

    #[test]
    fn the_packages_table_of_a_real_shape_is_read_in_order() {
        let mut c = Connection::open_in_memory().unwrap();
        c.execute_batch(
            "CREATE TABLE 'Packages' (hnum INTEGER PRIMARY KEY AUTOINCREMENT, blob BLOB NOT NULL);
             PRAGMA journal_mode = WAL;",
        )
        .unwrap();
        for (n, v) in [("zlib", "1.3"), ("gpg-pubkey", "abc"), ("acl", "2.3")] {
            let b = blob(&[
                (TAG_NAME, TYPE_STRING, s(n)),
                (TAG_VERSION, TYPE_STRING, s(v)),
                (TAG_RELEASE, TYPE_STRING, s("1")),
            ]);
            c.execute("INSERT INTO Packages (blob) VALUES (?1)", [b])
                .unwrap();
        }
        let bytes = c.serialize(rusqlite::MAIN_DB).unwrap().to_vec();
        let got: Vec<(String, String)> = parse(&bytes)
            .unwrap()
            .into_iter()
            .map(|f| (f.name, f.version))
            .collect();
        assert_eq!(
            got,
            [
                ("zlib".into(), "1.3-1".into()),
                ("acl".into(), "2.3-1".into())
            ]
        );
    }
}

//! The SBOM against ground truth. A real build in the unprivileged-job sandbox
//! (chroot mode) on the Debian bookworm base installs packages with apt, a
//! Python venv with pip wheels from PyPI, and a Node app with `npm ci` from the
//! npm registry (the outside sources the suite may use where a real install is
//! the point; the machine's HTTPS proxy CA reaches the RUN steps as a company CA
//! does). Its last step asks `dpkg-query -W`, `pip list` and `npm ls --all`
//! what is installed; the SBOM must list exactly that, with the same versions
//! (and the Go modules of the esbuild program that npm brings, and the Maven
//! coordinates in Debian's commons-lang3 jar, and the crates of uv, a Rust
//! program built with cargo-auditable),
//! the layer and Dockerfile line that brought each in, and both documents must
//! pass the official validators (`spdx-tools`, and CycloneDX's 1.6 JSON schema
//! through `cyclonedx-python-lib`), which ci/test installs from PyPI.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use support::attest::{tools, validate_cyclonedx, validate_spdx};
use support::debian::context_with_bookworm;
use support::sandbox::gitlab_job;
use support::*;

/// PEP 503 names, so that `pip list` and METADATA spellings compare.
fn pep503(name: &str) -> String {
    let mut out = String::new();
    for c in name.to_lowercase().chars() {
        let c = if matches!(c, '_' | '.') { '-' } else { c };
        if !(c == '-' && out.ends_with('-')) {
            out.push(c);
        }
    }
    out
}

/// Every (name, version) of `npm ls --all --json`'s tree, the root excluded.
fn npm_tree(v: &serde_json::Value, into: &mut BTreeSet<(String, String)>) {
    if let Some(deps) = v.get("dependencies").and_then(|d| d.as_object()) {
        for (name, d) in deps {
            if let Some(ver) = d.get("version").and_then(|x| x.as_str()) {
                into.insert((name.clone(), ver.to_string()));
            }
            npm_tree(d, into);
        }
    }
}

/// A CycloneDX component's kiln property.
fn prop<'a>(c: &'a serde_json::Value, name: &str) -> Option<&'a str> {
    c["properties"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == name)?["value"]
        .as_str()
}

#[test]
fn the_sbom_lists_what_dpkg_pip_and_npm_report_in_the_built_image() {
    if !need_root("the_sbom_lists_what_dpkg_pip_and_npm_report_in_the_built_image") {
        return;
    }
    // The validators first: a missing one fails before the long build.
    tools();
    let ctx = context_with_bookworm(&[
        (
            "app/package.json",
            r#"{ "name": "app", "version": "1.0.0", "private": true,
                 "dependencies": { "debug": "4.3.4", "ms": "2.0.0", "@types/ms": "0.7.34", "esbuild": "0.21.5" } }"#,
        ),
        (
            "Dockerfile",
            r#"FROM scratch
COPY root/ /
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 python3-venv nodejs npm libcommons-lang3-java > /tmp/apt.log 2>&1 || (tail -40 /tmp/apt.log; exit 1); rm -f /tmp/apt.log
RUN python3 -m venv /venv && /venv/bin/pip install -q --no-cache-dir --disable-pip-version-check requests==2.32.3 six==1.16.0 uv==0.13.10
COPY app/ /app/
RUN cd /app && npm install --package-lock-only --no-audit --no-fund --loglevel=error && npm ci --no-audit --no-fund --loglevel=error
RUN mkdir /truth && dpkg-query -W -f '${Package}\t${Version}\t${db:Status-Abbrev}\n' > /truth/dpkg \
 && /venv/bin/pip list --format=freeze --disable-pip-version-check > /truth/pip \
 && cd /app && npm ls --all --json > /truth/npm.json
"#,
        ),
    ]);
    let out = tempfile::tempdir().unwrap();
    let spdx = out.path().join("sbom/image.spdx.json");
    let cdx = out.path().join("sbom/image.cdx.json");
    // The machine's own CA bundle holds its HTTPS proxy's CA: the steps trust it
    // as they would a company CA (--run-ca-certs, on in GitLab CI with KILN_CA_CERT).
    let mut build = kiln();
    build
        .args(["build", "--context"])
        .arg(ctx.path())
        .arg("--sbom-file")
        .arg(&spdx)
        .arg("--sbom-file")
        .arg(&cdx)
        .env("GITLAB_CI", "true")
        .env("KILN_CA_CERT", "/etc/ssl/certs/ca-certificates.crt");
    gitlab_job(&mut build);
    let rootfs = build_cmd_and_unpack(&mut build, out.path());

    // Ground truth, from the image's own package managers.
    let dpkg: BTreeSet<(String, String)> = std::fs::read_to_string(rootfs.join("truth/dpkg"))
        .unwrap()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f.len() == 3 && f[2].starts_with("ii")).then(|| (f[0].to_string(), f[1].to_string()))
        })
        .collect();
    let pip: BTreeSet<(String, String)> = std::fs::read_to_string(rootfs.join("truth/pip"))
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once("=="))
        .map(|(n, v)| (pep503(n), v.to_string()))
        .collect();
    let mut npm = BTreeSet::new();
    npm_tree(
        &serde_json::from_slice(&std::fs::read(rootfs.join("truth/npm.json")).unwrap()).unwrap(),
        &mut npm,
    );
    assert!(dpkg.len() > 100, "{dpkg:?}");
    assert!(
        pip.contains(&("requests".into(), "2.32.3".into())),
        "{pip:?}"
    );
    assert!(pip.len() >= 6, "requests' dependencies, pip: {pip:?}");
    // debug 4.3.4 needs ms 2.1.2, the app pins ms 2.0.0: a nested node_modules.
    for want in [
        ("debug", "4.3.4"),
        ("ms", "2.0.0"),
        ("ms", "2.1.2"),
        ("@types/ms", "0.7.34"),
    ] {
        assert!(
            npm.contains(&(want.0.into(), want.1.into())),
            "{want:?} not in {npm:?}"
        );
    }

    // The CycloneDX document, sorted by where each package's metadata lies.
    validate_cyclonedx(&cdx);
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&cdx).unwrap()).unwrap();
    let comps = doc["components"].as_array().unwrap();
    let mut got: BTreeMap<&str, BTreeSet<(String, String)>> = BTreeMap::new();
    for c in comps.iter().filter(|c| c["type"] == "library") {
        let path = prop(c, "kiln:path").unwrap();
        let name = match c["group"].as_str() {
            Some(g) => format!("{g}/{}", c["name"].as_str().unwrap()),
            None => c["name"].as_str().unwrap().to_string(),
        };
        let version = c["version"].as_str().unwrap().to_string();
        let purl = c["purl"].as_str().unwrap();
        let scope = if purl.starts_with("pkg:deb/debian/") {
            "deb"
        } else if purl.starts_with("pkg:pypi/") && path.starts_with("/venv/") {
            "venv"
        } else if purl.starts_with("pkg:npm/") && path.starts_with("/app/node_modules/") {
            "app"
        } else {
            // Anything else must be in the image where the SBOM says.
            assert!(
                rootfs.join(&path[1..]).is_file(),
                "{path} is not in the image"
            );
            "other"
        };
        let name = if scope == "venv" { pep503(&name) } else { name };
        got.entry(scope).or_default().insert((name, version));
    }
    assert_eq!(
        got.get("deb"),
        Some(&dpkg),
        "deb packages differ from dpkg-query -W"
    );
    assert_eq!(
        got.get("venv"),
        Some(&pip),
        "the venv's packages differ from pip list"
    );
    assert_eq!(
        got.get("app"),
        Some(&npm),
        "the app's packages differ from npm ls --all"
    );

    // Where each came from: the step's line and layer.
    let line = |name: &str, purl_prefix: &str| {
        let c = comps
            .iter()
            .find(|c| {
                c["name"] == name && c["purl"].as_str().unwrap_or("").starts_with(purl_prefix)
            })
            .unwrap_or_else(|| panic!("{name} missing"));
        prop(c, "kiln:dockerfile:line").unwrap().to_string()
    };
    assert!(line("base-files", "pkg:deb/").ends_with("Dockerfile:2"));
    assert!(line("python3", "pkg:deb/").ends_with("Dockerfile:3"));
    assert!(line("requests", "pkg:pypi/").ends_with("Dockerfile:4"));
    assert!(line("ms", "pkg:npm/").ends_with("Dockerfile:6"));
    // esbuild's npm package brings a Go program: its modules, from the build
    // information in the binary, at the binary's path.
    let go: Vec<(&str, &str)> = comps
        .iter()
        .filter(|c| c["purl"].as_str().unwrap_or("").starts_with("pkg:golang/"))
        .map(|c| {
            assert_eq!(
                prop(c, "kiln:path"),
                Some("/app/node_modules/@esbuild/linux-x64/bin/esbuild"),
                "{c}"
            );
            (c["name"].as_str().unwrap(), c["version"].as_str().unwrap())
        })
        .collect();
    assert!(
        go.iter()
            .any(|(n, v)| *n == "stdlib" && v.starts_with("1.")),
        "{go:?}"
    );
    assert!(
        go.iter()
            .any(|(n, v)| *n == "golang.org/x/sys" && v.starts_with("v0.")),
        "{go:?}"
    );
    // uv (from PyPI) is a Rust program built with cargo-auditable: the crates
    // its .dep-v0 section names, as a few lines of Python read them from the
    // ELF file in the image, build dependencies left out.
    const DEP_V0: &str = r#"import json, struct, sys, zlib
d = open(sys.argv[1], 'rb').read()
shoff, = struct.unpack_from('<Q', d, 0x28)
ent, num, stri = struct.unpack_from('<HHH', d, 0x3A)
sh = lambda i: struct.unpack_from('<IIQQQQIIQQ', d, shoff + i * ent)
names = sh(stri)[4]
for i in range(num):
    s = sh(i)
    if d[names + s[0]:names + s[0] + 8] == b'.dep-v0\0':
        for p in json.loads(zlib.decompress(d[s[4]:s[4] + s[5]]))['packages']:
            if p.get('kind') != 'build':
                print(p['name'] + ' ' + p['version'])
"#;
    let uv = rootfs.join("venv/bin/uv");
    let truth: BTreeSet<String> = check(Command::new("python3").args(["-c", DEP_V0]).arg(&uv))
        .lines()
        .map(str::to_string)
        .collect();
    let listed: BTreeSet<String> = comps
        .iter()
        .filter(|c| prop(c, "kiln:path") == Some("/venv/bin/uv"))
        .map(|c| {
            format!(
                "{} {}",
                c["name"].as_str().unwrap(),
                c["version"].as_str().unwrap()
            )
        })
        .collect();
    assert!(
        truth.contains("uv 0.13.10") && truth.len() > 100,
        "{truth:?}"
    );
    assert_eq!(listed, truth, "uv's crates");
    // Debian's commons-lang3 jar: the Maven coordinates its pom.properties
    // give, as Python's zipfile reads them from the jar in the image.
    let mut jars = 0;
    for e in std::fs::read_dir(rootfs.join("usr/share/java")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "jar") || p.is_symlink() {
            continue;
        }
        const POM: &str = r#"import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
for n in z.namelist():
    if n.startswith('META-INF/maven/') and n.endswith('/pom.properties'):
        d = dict(l.split('=', 1) for l in z.read(n).decode().splitlines() if '=' in l and not l.startswith('#'))
        print(d['groupId'].strip() + ':' + d['artifactId'].strip() + ' ' + d['version'].strip())
"#;
        let out = check(Command::new("python3").args(["-c", POM]).arg(&p));
        let truth: BTreeSet<String> = out.lines().map(str::to_string).collect();
        let inside = format!("/{}", p.strip_prefix(&rootfs).unwrap().display());
        let listed: BTreeSet<String> = comps
            .iter()
            .filter(|c| prop(c, "kiln:path") == Some(inside.as_str()))
            .map(|c| {
                format!(
                    "{}:{} {}",
                    c["group"].as_str().unwrap_or(""),
                    c["name"].as_str().unwrap(),
                    c["version"].as_str().unwrap()
                )
            })
            .collect();
        assert_eq!(listed, truth, "{inside}");
        jars += truth.len();
    }
    assert!(jars >= 1, "no Maven coordinates in /usr/share/java");
    let libc = comps.iter().find(|c| c["name"] == "libc6").unwrap();
    assert_eq!(
        libc["purl"].as_str().unwrap(),
        format!(
            "pkg:deb/debian/libc6@{}?arch=amd64&distro=debian-12",
            dpkg.iter()
                .find(|(n, _)| n == "libc6")
                .unwrap()
                .1
                .replace('+', "%2B")
        )
    );
    assert_eq!(
        comps.iter().find(|c| c["name"] == "requests").unwrap()["licenses"][0]["license"]["id"],
        "Apache-2.0"
    );

    // The SPDX document: valid, the same packages.
    validate_spdx(&spdx);
    let sdoc: serde_json::Value = serde_json::from_slice(&std::fs::read(&spdx).unwrap()).unwrap();
    let spdx_pkgs: BTreeSet<(String, String)> = sdoc["packages"]
        .as_array()
        .unwrap()
        .iter()
        .skip(1)
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["versionInfo"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let cdx_pkgs: BTreeSet<(String, String)> = comps
        .iter()
        .filter(|c| c["type"] == "library")
        .map(|c| {
            let n = c["name"].as_str().unwrap();
            // Maven's group:artifact, npm's @scope/name.
            let sep = if c["purl"].as_str().unwrap_or("").starts_with("pkg:maven/") {
                ":"
            } else {
                "/"
            };
            let n = c["group"]
                .as_str()
                .map_or(n.to_string(), |g| format!("{g}{sep}{n}"));
            (n, c["version"].as_str().unwrap().to_string())
        })
        .collect();
    assert!(
        spdx_pkgs == cdx_pkgs,
        "SPDX and CycloneDX list different packages: {:?}",
        spdx_pkgs
            .symmetric_difference(&cdx_pkgs)
            .collect::<Vec<_>>()
    );
}

/// Build an rpm with rpmbuild under `top`; returns its path.
fn rpmbuild(
    top: &Path,
    name: &str,
    evr: (Option<u32>, &str, &str),
    license: &str,
    noarch: bool,
) -> PathBuf {
    let (epoch, version, release) = evr;
    let spec = top.join(format!("{name}.spec"));
    std::fs::write(
        &spec,
        format!(
            "Name: {name}\nVersion: {version}\nRelease: {release}\n{}{}Summary: a test package\n\
             License: {license}\n%global debug_package %{{nil}}\n%description\nkiln's rpm test\n\
             %install\nmkdir -p %{{buildroot}}/usr/share/{name}\necho {name} > %{{buildroot}}/usr/share/{name}/file\n\
             %files\n/usr/share/{name}/file\n",
            epoch.map(|e| format!("Epoch: {e}\n")).unwrap_or_default(),
            if noarch { "BuildArch: noarch\n" } else { "" }
        ),
    )
    .unwrap();
    check(
        Command::new("rpmbuild")
            .arg("--define")
            .arg(format!("_topdir {}", top.display()))
            .arg("-bb")
            .arg(&spec),
    );
    let arch_dir = top.join("RPMS");
    let mut found = None;
    for d in std::fs::read_dir(&arch_dir).unwrap() {
        for f in std::fs::read_dir(d.unwrap().path()).unwrap() {
            let p = f.unwrap().path();
            let file = p.file_name().unwrap().to_string_lossy().into_owned();
            if file.starts_with(&format!("{name}-{version}-")) {
                found = Some(p);
            }
        }
    }
    found.unwrap_or_else(|| panic!("rpmbuild made no {name} under {}", arch_dir.display()))
}

/// `rpm` against the database under `root` (Fedora's place for it).
fn rpm(root: &Path) -> Command {
    let mut c = Command::new("rpm");
    c.arg("--root")
        .arg(root)
        .args(["--dbpath", "/usr/lib/sysimage/rpm"]);
    c
}

#[test]
fn the_sbom_lists_what_rpm_reports_from_its_sqlite_database() {
    if !need_root("the_sbom_lists_what_rpm_reports_from_its_sqlite_database") {
        return;
    }
    tools();
    // Real packages made by rpmbuild and installed by rpm (Debian's, whose
    // database is sqlite as Fedora's and EL 9's are): one with an epoch and an
    // SPDX expression, one for the host's architecture, one that the second
    // step removes and one that it adds.
    let top = tempfile::tempdir().unwrap();
    let hello = rpmbuild(
        top.path(),
        "kiln-hello",
        (Some(2), "1.2.3", "4.kt1"),
        "MIT AND (Apache-2.0 OR BSD-3-Clause)",
        true,
    );
    let tool = rpmbuild(
        top.path(),
        "kiln-tool",
        (None, "0.9", "1"),
        "GPL-2.0-only",
        false,
    );
    let old = rpmbuild(top.path(), "kiln-old", (None, "1.0", "1"), "MIT", false);
    let new = rpmbuild(
        top.path(),
        "kiln-new",
        (None, "3.1", "2"),
        "BSD-2-Clause",
        false,
    );

    let ctx = context(&[
        ("Dockerfile", "FROM scratch\nCOPY one/ /\nCOPY two/ /\n"),
        (
            "one/etc/os-release",
            "ID=fedora\nVERSION_ID=40\nNAME=Fedora Linux\n",
        ),
    ]);
    let one = ctx.path().join("one");
    check(rpm(&one).arg("--initdb"));
    check(
        rpm(&one)
            .args(["-i", "--nodeps", "--ignorearch"])
            .args([&hello, &tool, &old]),
    );
    // Fedora's layout: /var/lib/rpm points at /usr/lib/sysimage/rpm.
    std::fs::create_dir_all(one.join("var/lib")).unwrap();
    std::os::unix::fs::symlink("../../usr/lib/sysimage/rpm", one.join("var/lib/rpm")).unwrap();
    // The second step's database: the first with one package removed, one added.
    let second = tempfile::tempdir().unwrap();
    check(
        Command::new("cp")
            .arg("-a")
            .arg(one.join("."))
            .arg(second.path()),
    );
    check(rpm(second.path()).args(["-e", "--nodeps", "kiln-old"]));
    check(
        rpm(second.path())
            .args(["-i", "--nodeps", "--ignorearch"])
            .arg(&new),
    );
    let db = "usr/lib/sysimage/rpm";
    std::fs::create_dir_all(ctx.path().join("two").join(db)).unwrap();
    for e in std::fs::read_dir(second.path().join(db)).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(
            &p,
            ctx.path().join("two").join(db).join(p.file_name().unwrap()),
        )
        .unwrap();
    }

    let out = tempfile::tempdir().unwrap();
    let spdx = out.path().join("image.spdx.json");
    let cdx = out.path().join("image.cdx.json");
    let mut build = kiln();
    build
        .args(["build", "--context"])
        .arg(ctx.path())
        .arg("--sbom-file")
        .arg(&spdx)
        .arg("--sbom-file")
        .arg(&cdx);
    let rootfs = build_cmd_and_unpack(&mut build, out.path());

    // Ground truth: rpm itself, on the built image's database.
    let truth: BTreeSet<(String, String)> = check(rpm(&rootfs).args([
        "-qa",
        "--qf",
        "%{NAME} %|EPOCH?{%{EPOCH}:}:{}|%{VERSION}-%{RELEASE}\\n",
    ]))
    .lines()
    .filter_map(|l| l.split_once(' '))
    .map(|(n, v)| (n.to_string(), v.to_string()))
    .collect();
    assert_eq!(
        truth,
        [
            ("kiln-hello", "2:1.2.3-4.kt1"),
            ("kiln-new", "3.1-2"),
            ("kiln-tool", "0.9-1")
        ]
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .into_iter()
        .collect(),
        "rpm -qa on the image"
    );

    validate_cyclonedx(&cdx);
    validate_spdx(&spdx);
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&cdx).unwrap()).unwrap();
    let comps: Vec<&serde_json::Value> = doc["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["purl"].as_str().unwrap_or("").starts_with("pkg:rpm/"))
        .collect();
    let listed: BTreeSet<(String, String)> = comps
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["version"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(listed, truth, "the SBOM's rpm packages against rpm -qa");
    let comp = |name: &str| *comps.iter().find(|c| c["name"] == name).unwrap();
    let hello = comp("kiln-hello");
    assert_eq!(
        hello["purl"],
        "pkg:rpm/fedora/kiln-hello@1.2.3-4.kt1?arch=noarch&distro=fedora-40&epoch=2"
    );
    assert_eq!(
        hello["licenses"][0]["expression"], "MIT AND (Apache-2.0 OR BSD-3-Clause)",
        "{hello}"
    );
    assert_eq!(
        prop(hello, "kiln:path"),
        Some("/usr/lib/sysimage/rpm/rpmdb.sqlite")
    );
    let arch = check(Command::new("rpm").args(["--eval", "%{_arch}"]));
    assert!(
        comp("kiln-tool")["purl"]
            .as_str()
            .unwrap()
            .contains(&format!("?arch={}&", arch.trim())),
        "{}",
        comp("kiln-tool")
    );
    // The layer that brought each in: kept across the rewritten database.
    assert!(prop(hello, "kiln:dockerfile:line")
        .unwrap()
        .ends_with("Dockerfile:2"));
    assert!(prop(comp("kiln-new"), "kiln:dockerfile:line")
        .unwrap()
        .ends_with("Dockerfile:3"));
    let sdoc: serde_json::Value = serde_json::from_slice(&std::fs::read(&spdx).unwrap()).unwrap();
    let spdx_rpms: BTreeSet<(String, String)> = sdoc["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| {
            p["externalRefs"].as_array().is_some_and(|r| {
                r.iter().any(|r| {
                    r["referenceLocator"]
                        .as_str()
                        .unwrap_or("")
                        .starts_with("pkg:rpm/")
                })
            })
        })
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["versionInfo"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(spdx_rpms, truth, "the SPDX document's rpm packages");
}

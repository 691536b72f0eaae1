//! Docker's result on what a peer's own test suite builds (issue #29): each case
//! built in the test sandbox's chroot mode (an unprivileged GitLab job: Docker's
//! capabilities and seccomp profile) and checked on the image itself, its files
//! unpacked by umoci and its config read by skopeo. The expected results are
//! BuildKit's, from its code (`dockerfile2llb/convert.go`, `convert_copy.go`,
//! fsutil's copy) and documented behaviour.

mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use support::sandbox::gitlab_job;
use support::*;

struct Built {
    ok: bool,
    log: String,
    layout: PathBuf,
}

/// `kiln build` of `ctx` in the sandbox, chroot mode, into an OCI layout in
/// `out`, its bases from the plain-HTTP test registry `reg`.
fn job_build(reg: &Registry, ctx: &Path, out: &Path, extra: &[&str]) -> Built {
    let layout = out.join("oci");
    let mut cmd = kiln();
    cmd.args(["build", "--no-push", "--isolation", "chroot", "--context"])
        .arg(ctx)
        .args(["--insecure-registry", &reg.addr])
        .arg("--oci-layout-path")
        .arg(&layout)
        .args(extra);
    gitlab_job(&mut cmd);
    let o = run(&mut cmd);
    Built {
        ok: o.status.success(),
        log: output_text(&o),
        layout,
    }
}

impl Built {
    /// The image's files, unpacked by umoci.
    fn rootfs(&self) -> PathBuf {
        assert!(self.ok, "{}", self.log);
        let work = self.layout.with_file_name("unpacked");
        unpack(&format!("oci:{}:latest", self.layout.display()), &work)
    }

    /// The image's config as skopeo reads it from the layout.
    fn config(&self) -> serde_json::Value {
        assert!(self.ok, "{}", self.log);
        let out = check(
            Command::new("skopeo")
                .args(["inspect", "--raw", "--config"])
                .arg(format!("oci:{}:latest", self.layout.display())),
        );
        serde_json::from_str(&out).expect("config JSON")
    }
}

fn owner(p: &Path) -> (u32, u32) {
    let md = std::fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    (md.uid(), md.gid())
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn base(reg: &Registry) -> String {
    push_busybox_base(reg, "base");
    format!("{}/base", reg.addr)
}

#[test]
fn copy_from_keeps_owners_and_workdir_creates_the_users_directory_end_to_end() {
    if !need_root("copy_from_keeps_owners_and_workdir_creates_the_users_directory_end_to_end") {
        return;
    }
    let reg = Registry::start();
    let b = base(&reg);
    // The issue's case, then a non-root application built by a stage that
    // runs as `app` in a WORKDIR it never created, and shipped with COPY --from.
    let ctx = context(&[(
        "Dockerfile",
        &format!(
            "FROM {b} AS b\n\
             RUN mkdir -p /d/s && touch /d/s/f && chown 123:123 /d/s && chown 321:321 /d/s/f\n\
             FROM {b} AS build\n\
             USER app\n\
             WORKDIR /home/app/work\n\
             RUN mkdir data && echo built > data/out.txt && id -u > data/uid.txt\n\
             FROM {b}\n\
             COPY --from=b /d /d\n\
             COPY --from=build /home/app/work /srv/app\n\
             USER app\n\
             WORKDIR /srv/app/data\n\
             RUN touch by-app && cat out.txt\n"
        ),
    )]);
    let out = tempfile::tempdir().unwrap();
    let built = job_build(&reg, ctx.path(), out.path(), &[]);
    assert!(built.ok, "{}", built.log);
    assert!(built.log.contains("│ built"), "{}", built.log);
    let root = built.rootfs();
    assert_eq!(owner(&root.join("d/s")), (123, 123));
    assert_eq!(owner(&root.join("d/s/f")), (321, 321));
    // COPY creates the destination directory itself as root's (fsutil's
    // MkdirAll); what it copies keeps its owner.
    assert_eq!(owner(&root.join("srv/app")), (0, 0));
    assert_eq!(owner(&root.join("srv/app/data")), (1000, 1000));
    assert_eq!(owner(&root.join("srv/app/data/out.txt")), (1000, 1000));
    assert_eq!(
        std::fs::read_to_string(root.join("srv/app/data/uid.txt")).unwrap(),
        "1000\n"
    );
    assert_eq!(owner(&root.join("srv/app/data/by-app")), (1000, 1000));
}

#[test]
fn workdir_is_a_layer_only_when_it_creates_a_directory() {
    if !need_root("workdir_is_a_layer_only_when_it_creates_a_directory") {
        return;
    }
    let reg = Registry::start();
    let b = base(&reg);
    let ctx = context(&[(
        "Dockerfile",
        &format!(
            "FROM {b} AS w\nUSER app:staff\nWORKDIR /work/deep\nWORKDIR /tmp\nWORKDIR /\n\
             FROM {b}\nCOPY --from=w /work /work\n"
        ),
    )]);
    let out = tempfile::tempdir().unwrap();
    let built = job_build(
        &reg,
        ctx.path(),
        out.path(),
        &["--target", "w", "--reproducible"],
    );
    let root = built.rootfs();
    // mkdir -p as USER: every new directory is the user's, 0755, dated
    // SOURCE_DATE_EPOCH (0 with --reproducible).
    for d in ["work", "work/deep"] {
        let p = root.join(d);
        assert_eq!(owner(&p), (1000, 50), "{d}");
        assert_eq!(mode(&p), 0o755, "{d}");
        assert_eq!(std::fs::metadata(&p).unwrap().mtime(), 0, "{d}");
    }
    let cfg = built.config();
    assert_eq!(cfg["config"]["WorkingDir"], "/");
    let history: Vec<(String, bool)> = cfg["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["created_by"].as_str().unwrap_or("").to_string(),
                h["empty_layer"].as_bool().unwrap_or(false),
            )
        })
        .filter(|(c, _)| c.starts_with("WORKDIR"))
        .collect();
    assert_eq!(
        history,
        [
            ("WORKDIR /work/deep".to_string(), false),
            ("WORKDIR /tmp".to_string(), true),
            ("WORKDIR /".to_string(), true),
        ],
        "{cfg}"
    );
    // The next stage finds the directory WORKDIR made.
    let out2 = tempfile::tempdir().unwrap();
    let whole = job_build(&reg, ctx.path(), out2.path(), &[]);
    assert!(whole.rootfs().join("work/deep").is_dir(), "{}", whole.log);
}

/// Push an image whose config is written the way buildah's and podman's Docker
/// format (and Docker's classic builder) write one with nothing set: empty
/// strings and nulls, `"WorkingDir": ""`.
fn push_buildah_style_base(reg: &Registry, repo: &str) {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("root");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    for app in ["sh", "pwd", "env", "id", "cat", "grep"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(app)).unwrap();
    }
    let tar = d.path().join("layer.tar");
    check(
        Command::new("tar")
            .args(["--numeric-owner", "--owner=0", "--group=0", "-cf"])
            .arg(&tar)
            .arg("-C")
            .arg(&root)
            .arg("bin"),
    );
    let layer = std::fs::read(&tar).unwrap();
    let diff_id = upload_blob(&reg.addr, repo, &layer);
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{"Hostname":"","Domainname":"","User":"","AttachStdin":false,"Tty":false,"Env":null,"Cmd":null,"Image":"","Volumes":null,"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":null,"StopSignal":""}},"rootfs":{{"type":"layers","diff_ids":["{diff_id}"]}},"history":[{{"created_by":"buildah"}}]}}"#
    );
    let config_digest = upload_blob(&reg.addr, repo, config.as_bytes());
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{{"mediaType":"application/vnd.docker.container.image.v1+json","size":{},"digest":"{config_digest}"}},"layers":[{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar","size":{},"digest":"{diff_id}"}}]}}"#,
        config.len(),
        layer.len()
    );
    let (status, head, body) = http_full(
        &reg.addr,
        "PUT",
        &format!("/v2/{repo}/manifests/latest"),
        "application/vnd.docker.distribution.manifest.v2+json",
        manifest.as_bytes(),
    )
    .expect("PUT manifest");
    assert_eq!(
        status, 201,
        "pushing the buildah-style base: {head}\n{body}"
    );
}

#[test]
fn a_base_with_empty_config_fields_runs_steps_at_the_root() {
    if !need_root("a_base_with_empty_config_fields_runs_steps_at_the_root") {
        return;
    }
    let reg = Registry::start();
    push_buildah_style_base(&reg, "buildah/base");
    assert_eq!(
        config_of(&reg, "buildah/base:latest")["config"]["WorkingDir"],
        ""
    );
    let ctx = context(&[(
        "Dockerfile",
        &format!(
            "FROM {}/buildah/base\nRUN pwd > /where && env | grep ^PATH= > /path\n",
            reg.addr
        ),
    )]);
    let out = tempfile::tempdir().unwrap();
    let built = job_build(&reg, ctx.path(), out.path(), &[]);
    assert!(built.ok, "{}", built.log);
    let root = built.rootfs();
    assert_eq!(std::fs::read_to_string(root.join("where")).unwrap(), "/\n");
    let path = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    assert_eq!(
        std::fs::read_to_string(root.join("path")).unwrap(),
        format!("{path}\n")
    );
    // Unset fields stay unset; the image gets BuildKit's PATH.
    let cfg = built.config();
    assert!(cfg["config"].get("WorkingDir").is_none(), "{cfg}");
    assert!(cfg["config"].get("User").is_none(), "{cfg}");
    assert_eq!(cfg["config"]["Env"], serde_json::json!([path]), "{cfg}");
}

#[test]
fn from_scratch_has_buildkits_path_and_workdir() {
    if !need_root("from_scratch_has_buildkits_path_and_workdir") {
        return;
    }
    let reg = Registry::start();
    let ctx = context(&[("Dockerfile", "FROM scratch\nCOPY f /f\n"), ("f", "x")]);
    let out = tempfile::tempdir().unwrap();
    let cfg = job_build(&reg, ctx.path(), out.path(), &[]).config();
    assert_eq!(
        cfg["config"]["Env"],
        serde_json::json!(["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]),
        "{cfg}"
    );
    assert_eq!(cfg["config"]["WorkingDir"], "/", "{cfg}");
}

/// A tar with `inner/x.txt`, compressed by `tar`'s `flag` (`-j`, `-J`).
fn archive(dir: &Path, name: &str, flag: &str) {
    let src = dir.join(format!("src-{name}"));
    std::fs::create_dir_all(src.join("inner")).unwrap();
    std::fs::write(src.join("inner/x.txt"), name).unwrap();
    check(
        Command::new("tar")
            .arg(flag)
            .arg("-cf")
            .arg(dir.join(name))
            .arg("-C")
            .arg(&src)
            .arg("inner"),
    );
    std::fs::remove_dir_all(&src).unwrap();
}

/// One COPY/ADD case: `steps` after `FROM scratch`, built in the sandbox from a
/// context of `files` (`prepare` adds links, modes, archives); the image's files.
fn copy_case(
    steps: &str,
    files: &[(&str, &str)],
    prepare: impl Fn(&Path),
    extra: &[&str],
) -> (tempfile::TempDir, PathBuf) {
    let reg = Registry::start();
    let mut all = vec![("Dockerfile", format!("FROM scratch\n{steps}"))];
    all.extend(files.iter().map(|(p, c)| (*p, c.to_string())));
    let refs: Vec<(&str, &str)> = all.iter().map(|(p, c)| (*p, c.as_str())).collect();
    let ctx = context(&refs);
    prepare(ctx.path());
    let out = tempfile::tempdir().unwrap();
    let root = job_build(&reg, ctx.path(), out.path(), extra).rootfs();
    (out, root)
}

fn read(root: &Path, p: &str) -> String {
    std::fs::read_to_string(root.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"))
}

#[test]
fn a_wildcard_matching_one_file_copies_into_a_file_destination() {
    if !need_root("a_wildcard_matching_one_file_copies_into_a_file_destination") {
        return;
    }
    let (_out, root) = copy_case("COPY fo? /foo2\n", &[("foo", "the foo")], |_| {}, &[]);
    assert_eq!(read(&root, "foo2"), "the foo");
}

#[test]
fn a_wildcard_matching_nothing_copies_nothing() {
    if !need_root("a_wildcard_matching_nothing_copies_nothing") {
        return;
    }
    let (_out, root) = copy_case(
        "COPY nomatch* /none/\nCOPY f /f\n",
        &[("f", "x")],
        |_| {},
        &[],
    );
    assert!(!root.join("none").exists());
    assert_eq!(read(&root, "f"), "x");
}

#[test]
fn a_symlink_source_is_copied_under_its_own_name() {
    if !need_root("a_symlink_source_is_copied_under_its_own_name") {
        return;
    }
    let (_out, root) = copy_case(
        "COPY link /l/\n",
        &[("target.txt", "through the link")],
        |ctx| std::os::unix::fs::symlink("target.txt", ctx.join("link")).unwrap(),
        &[],
    );
    assert_eq!(read(&root, "l/link"), "through the link");
    assert!(!root.join("l/target.txt").exists());
}

#[test]
fn a_url_and_a_local_file_share_an_add() {
    if !need_root("a_url_and_a_local_file_share_an_add") {
        return;
    }
    let pki = support::gitlab::Pki::new();
    let web_root = tempfile::tempdir().unwrap();
    std::fs::write(web_root.path().join("remote.txt"), "from-url").unwrap();
    let web = support::https::StaticServer::start(web_root.path(), &pki.cert, &pki.key);
    let ca = pki.ca.display().to_string();
    let (_out, root) = copy_case(
        &format!("ADD https://{}/remote.txt local.txt /mixed/\n", web.addr),
        &[("local.txt", "local")],
        |_| {},
        &["--ca-cert", &ca],
    );
    assert_eq!(read(&root, "mixed/remote.txt"), "from-url");
    assert_eq!(mode(&root.join("mixed/remote.txt")), 0o600);
    assert_eq!(read(&root, "mixed/local.txt"), "local");
}

#[test]
fn two_heredocs_in_one_copy() {
    if !need_root("two_heredocs_in_one_copy") {
        return;
    }
    let (_out, root) = copy_case(
        "COPY <<A <<B /out/\na-body\nA\nb-body\nB\n",
        &[],
        |_| {},
        &[],
    );
    assert_eq!(read(&root, "out/A"), "a-body\n");
    assert_eq!(read(&root, "out/B"), "b-body\n");
}

#[test]
fn chmod_takes_symbolic_modes() {
    if !need_root("chmod_takes_symbolic_modes") {
        return;
    }
    let (_out, root) = copy_case(
        "COPY --chmod=go=u secret /sym/secret\nCOPY --chmod=u=rwX,go=rX tool /sym/tool\n",
        &[("secret", "s"), ("tool", "#!/bin/sh\n")],
        |ctx| {
            let set = |f: &str, m: u32| {
                std::fs::set_permissions(ctx.join(f), std::fs::Permissions::from_mode(m)).unwrap()
            };
            set("secret", 0o640);
            set("tool", 0o700);
        },
        &[],
    );
    assert_eq!(mode(&root.join("sym/secret")), 0o666);
    assert_eq!(mode(&root.join("sym/tool")), 0o755);
}

#[test]
fn chmod_applies_to_the_directories_copy_creates() {
    if !need_root("chmod_applies_to_the_directories_copy_creates") {
        return;
    }
    let (_out, root) = copy_case(
        "COPY --chmod=0750 f /newp/deeper/f\n",
        &[("f", "x")],
        |_| {},
        &[],
    );
    assert_eq!(mode(&root.join("newp")), 0o750);
    assert_eq!(mode(&root.join("newp/deeper")), 0o750);
    assert_eq!(mode(&root.join("newp/deeper/f")), 0o750);
}

#[test]
fn add_unpacks_bzip2_and_xz_archives() {
    if !need_root("add_unpacks_bzip2_and_xz_archives") {
        return;
    }
    let (_out, root) = copy_case(
        "ADD a.tar.bz2 /bz/\nADD a.tar.xz /xz/\n",
        &[],
        |ctx| {
            archive(ctx, "a.tar.bz2", "-j");
            archive(ctx, "a.tar.xz", "-J");
        },
        &[],
    );
    assert_eq!(read(&root, "bz/inner/x.txt"), "a.tar.bz2");
    assert_eq!(read(&root, "xz/inner/x.txt"), "a.tar.xz");
}

#[test]
fn a_wildcard_matching_several_files_still_needs_a_directory() {
    let ctx = context(&[
        ("Dockerfile", "FROM scratch\nCOPY f? /dest\n"),
        ("f1", "1"),
        ("f2", "2"),
    ]);
    let out = tempfile::tempdir().unwrap();
    let o = run(kiln()
        .args(["build", "--no-push", "--context"])
        .arg(ctx.path())
        .arg("--oci-layout-path")
        .arg(out.path().join("oci")));
    let log = output_text(&o);
    assert!(!o.status.success(), "{log}");
    assert!(log.contains("Dockerfile:2"), "{log}");
    assert!(log.contains("directory destination"), "{log}");
}

#[test]
fn an_orphan_of_a_step_is_reaped_while_the_step_runs() {
    if !need_root("an_orphan_of_a_step_is_reaped_while_the_step_runs") {
        return;
    }
    let reg = Registry::start();
    let b = base(&reg);
    let ctx = context(&[(
        "Dockerfile",
        &format!(
            "FROM {b}\nRUN (sleep 0.2 &) ; sleep 2; echo zombies=$(ps -o stat | grep -c '^Z')\n"
        ),
    )]);
    let out = tempfile::tempdir().unwrap();
    let built = job_build(&reg, ctx.path(), out.path(), &[]);
    assert!(built.ok, "{}", built.log);
    assert!(built.log.contains("│ zombies=0"), "{}", built.log);
}

#[test]
fn a_cache_mount_target_with_or_without_a_slash_is_one_cache() {
    if !need_root("a_cache_mount_target_with_or_without_a_slash_is_one_cache") {
        return;
    }
    let reg = Registry::start();
    let b = base(&reg);
    let ctx = context(&[(
        "Dockerfile",
        &format!(
            "FROM {b}\n\
             RUN --mount=type=cache,target=/c/ echo one > /c/f\n\
             RUN --mount=type=cache,target=/c cat /c/f > /from-cache\n"
        ),
    )]);
    let out = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let built = job_build(
        &reg,
        ctx.path(),
        out.path(),
        &["--cache-dir", cache.path().to_str().unwrap()],
    );
    assert_eq!(read(&built.rootfs(), "from-cache"), "one\n");
}

#[test]
fn an_env_quote_that_does_not_close_fails_only_where_it_is_expanded() {
    if !need_root("an_env_quote_that_does_not_close_fails_only_where_it_is_expanded") {
        return;
    }
    let reg = Registry::start();
    let dockerfile = |built: &str| {
        format!("FROM scratch AS unused\nENV a 'x\\'y'\nFROM scratch\n{built}COPY f /f\n")
    };
    let ctx = context(&[("Dockerfile", &dockerfile("")), ("f", "x")]);
    let out = tempfile::tempdir().unwrap();
    let built = job_build(&reg, ctx.path(), out.path(), &[]);
    assert!(built.ok, "{}", built.log);
    std::fs::write(ctx.path().join("Dockerfile"), dockerfile("ENV b 'x\\'y'\n")).unwrap();
    let out2 = tempfile::tempdir().unwrap();
    let failed = job_build(&reg, ctx.path(), out2.path(), &[]);
    assert!(!failed.ok, "{}", failed.log);
    assert!(failed.log.contains("Dockerfile:4"), "{}", failed.log);
    assert!(failed.log.contains("quote"), "{}", failed.log);
}

#[test]
fn an_escaped_quote_in_a_heredoc_name_does_not_stop_its_expansion() {
    if !need_root("an_escaped_quote_in_a_heredoc_name_does_not_stop_its_expansion") {
        return;
    }
    let (_out, root) = copy_case(
        "ARG V=expanded\nCOPY <<eo\\'f /h.txt\nv=$V\neo'f\n",
        &[],
        |_| {},
        &[],
    );
    assert_eq!(read(&root, "h.txt"), "v=expanded\n");
}

#[test]
fn the_same_build_gives_one_digest_in_five_processes() {
    if !need_root("the_same_build_gives_one_digest_in_five_processes") {
        return;
    }
    let reg = Registry::start();
    let b = base(&reg);
    let ctx = context(&[
        (
            "Dockerfile",
            &format!(
                "ARG BASE={b}\n\
                 FROM $BASE\n\
                 ARG A1 A2 A3\n\
                 ENV E1=$A1 E2=two E3=three\n\
                 LABEL l1=$A2 l2=b l3=c l4=d l5=e\n\
                 COPY app/ /app/\n\
                 RUN --mount=type=cache,target=/cache echo \"$A1 $A2 $A3\" > /app/args && env | sort > /app/env && ls /cache >/dev/null\n\
                 CMD [\"/bin/sh\"]\n"
            ),
        ),
        ("app/a.txt", "a"),
        ("app/sub/b.txt", "b"),
    ]);
    let mut digests = Vec::new();
    for i in 0..5 {
        let out = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        let digest_file = out.path().join("digest");
        let mut cmd = kiln();
        cmd.args([
            "build",
            "--reproducible",
            "--isolation",
            "chroot",
            "--context",
        ])
        .arg(ctx.path())
        .args(["--insecure-registry", &reg.addr])
        .args(["--cache-dir", cache.path().to_str().unwrap()])
        .args(["--build-arg", "A1=one", "--build-arg", "A2=two"])
        .args(["--build-arg", "A3=three", "--build-arg", "UNUSED=x"])
        .args([
            "--label",
            "org.example.z=last",
            "--label",
            "org.example.a=first",
        ])
        .args([
            "--annotation",
            "org.example.y=1",
            "--annotation",
            "org.example.b=2",
        ])
        .args(["--destination", &format!("{}/app/one:{i}", reg.addr)])
        .args(["--destination", &format!("{}/app/two:{i}", reg.addr)])
        .arg("--digest-file")
        .arg(&digest_file);
        gitlab_job(&mut cmd);
        let o = run(&mut cmd);
        assert!(o.status.success(), "{}", output_text(&o));
        digests.push(std::fs::read_to_string(&digest_file).unwrap());
    }
    assert!(
        digests.iter().all(|d| *d == digests[0]),
        "one build, several digests: {digests:?}"
    );
    // The manifest carries the base annotations (the part that was written in
    // hash-map order), and both destinations hold the same manifest.
    let manifest = |repo: &str| {
        check(
            Command::new("skopeo")
                .args(["inspect", "--raw", "--tls-verify=false"])
                .arg(format!("docker://{}/{repo}", reg.addr)),
        )
    };
    let one = manifest("app/one:4");
    assert_eq!(one, manifest("app/two:4"));
    assert!(
        one.contains("org.opencontainers.image.base.digest"),
        "{one}"
    );
}

//! Registry faults, injected by a proxy in front of the real docker-registry: a
//! dropped upload, rate limits with Retry-After, an outage, a download that breaks
//! off. kiln retries what can be retried, says so, and pushes a correct image.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::proxy::{Fault, FaultProxy};
use support::*;

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn push_through(
    proxy: &FaultProxy,
    ctx: &std::path::Path,
    tag: &str,
    extra: &[&str],
) -> std::process::Output {
    run(kiln()
        .args(["build", "--insecure-registry", &proxy.addr])
        .args(["--destination", &format!("{}/faults/app:{tag}", proxy.addr)])
        .arg("--context")
        .arg(ctx)
        .args(extra))
}

/// A build pushed to `multi/one:TAG` and `multi/two:TAG` through `proxy`.
fn to_two_destinations(
    proxy: &FaultProxy,
    ctx: &std::path::Path,
    tag: &str,
) -> std::process::Output {
    run(kiln()
        .args(["build", "--insecure-registry", &proxy.addr])
        .args(["--destination", &format!("{}/multi/one:{tag}", proxy.addr)])
        .args(["--destination", &format!("{}/multi/two:{tag}", proxy.addr)])
        .arg("--context")
        .arg(ctx))
}

#[test]
fn an_upload_that_breaks_off_starts_a_new_session() {
    let reg = Registry::start();
    // Incompressible enough that the layer stays over 100 KB.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let data: String = (0..400_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b"0123456789abcdef"[(x & 15) as usize])
        })
        .collect();
    let ctx = context(&[
        ("Dockerfile", "FROM scratch\nCOPY data /data\n"),
        ("data", &data),
    ]);
    // The layer's first five uploads break off halfway. In the first build: its
    // upload while it is written (a streamed PATCH), that upload's fallback from
    // the finished file (a PUT), and the push's own attempt. In the second: the
    // streamed upload and its fallback, which then retries in a new session.
    let puts = Arc::new(AtomicUsize::new(0));
    let seen = puts.clone();
    let proxy = FaultProxy::start(&reg.addr, move |req| {
        if (req.is("PUT", "/blobs/uploads/") || req.is("PATCH", "/blobs/uploads/"))
            && req.body_len > 100_000
            && seen.fetch_add(1, Ordering::SeqCst) < 5
        {
            return Fault::DropMidBody;
        }
        Fault::Forward
    });

    // With retries off, the failure is an error naming the registry; no tag.
    let out = push_through(&proxy, ctx.path(), "no-retry", &["--push-retry", "0"]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains(&format!("registry {}", proxy.addr)), "{err}");
    assert!(
        !reg.has_tag("faults/app", "no-retry"),
        "a failed push leaves no tag"
    );

    let out = push_through(&proxy, ctx.path(), "1", &[]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("upload of sha256:") && err.contains("retry 1 of 10"),
        "the retry is said:\n{err}"
    );
    let sessions = proxy.count("POST /v2/faults/app/blobs/uploads/");
    assert!(
        sessions >= 3,
        "a new session after the broken one (config, layer, retry): {sessions}\n{:#?}",
        proxy.log.lock().unwrap()
    );
    assert!(reg.has_tag("faults/app", "1"));
    let work = tempfile::tempdir().unwrap();
    let root = unpack(&format!("docker://{}/faults/app:1", reg.addr), work.path());
    assert_eq!(std::fs::read_to_string(root.join("data")).unwrap(), data);
}

#[test]
fn rate_limits_outages_and_broken_downloads_are_waited_out() {
    let reg = Registry::start();
    push_busybox_base(&reg, "base/busybox");
    let first: Arc<Mutex<Option<Instant>>> = Arc::default();
    let cut = Arc::new(AtomicUsize::new(0));
    let (clock, cuts) = (first.clone(), cut.clone());
    let proxy = FaultProxy::start(&reg.addr, move |req| {
        let since = {
            let mut t = clock.lock().unwrap();
            t.get_or_insert_with(Instant::now).elapsed()
        };
        // A 3 s rate-limit window on manifests, then a 5 s outage on blobs, then
        // the first blob download breaks off after 1000 bytes.
        if req.is("GET", "/manifests/") && since < Duration::from_secs(3) {
            return Fault::Respond(429, vec![("Retry-After", "3".into())]);
        }
        if req.is("GET", "/blobs/") && since < Duration::from_secs(8) {
            return Fault::Respond(503, vec![]);
        }
        if req.is("GET", "/blobs/sha256:") && cuts.fetch_add(1, Ordering::SeqCst) == 1 {
            return Fault::CutResponse(1000);
        }
        Fault::Forward
    });
    let ctx = context(&[
        (
            "Dockerfile",
            &format!("FROM {}/base/busybox\nCOPY a /a\n", proxy.addr),
        ),
        ("a", "a\n"),
    ]);
    let out = push_through(&proxy, ctx.path(), "2", &[]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("was rate-limited (429 Too Many Requests)")
            && err.contains("(as Retry-After asks)"),
        "the 429 is named and its Retry-After honoured:\n{err}"
    );
    assert!(err.contains("answered 503"), "the outage is said:\n{err}");
    assert!(
        err.contains("download of sha256:") && err.contains("broke off"),
        "the broken download is retried:\n{err}"
    );
    assert!(
        proxy.count("cut after") == 1,
        "{:#?}",
        proxy.log.lock().unwrap()
    );
    let work = tempfile::tempdir().unwrap();
    let root = unpack(&format!("docker://{}/faults/app:2", reg.addr), work.path());
    assert!(root.join("bin/busybox").exists() && root.join("a").exists());
}

/// Two destinations: every blob goes into both before either is tagged, so a
/// failure at the second tags neither; the second mounts the first's blobs, so
/// each layer is uploaded once.
#[test]
fn several_destinations_get_their_blobs_first_and_their_tags_last() {
    let reg = Registry::start();
    let refuse = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let gate = refuse.clone();
    // First the second destination refuses every upload (and mount).
    let proxy = FaultProxy::start(&reg.addr, move |req| {
        if req.is("POST", "/v2/multi/two/blobs/uploads/") && gate.load(Ordering::SeqCst) {
            return Fault::Respond(403, vec![]);
        }
        Fault::Forward
    });
    let ctx = context(&[("Dockerfile", "FROM scratch\nCOPY a /a\n"), ("a", "a\n")]);
    let both = |tag: &str| to_two_destinations(&proxy, ctx.path(), tag);
    let out = both("1");
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("multi/two"),
        "the failing destination is named:\n{err}"
    );
    assert!(
        !reg.has_tag("multi/one", "1") && !reg.has_tag("multi/two", "1"),
        "a failure at the second destination leaves the first untagged"
    );
    refuse.store(false, Ordering::SeqCst);
    let before = proxy.log.lock().unwrap().len();
    let ctx2 = context(&[
        ("Dockerfile", "FROM scratch\nCOPY b /b\n"),
        ("b", "new content\n"),
    ]);
    let out = to_two_destinations(&proxy, ctx2.path(), "2");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(reg.has_tag("multi/one", "2") && reg.has_tag("multi/two", "2"));
    let log: Vec<String> = proxy.log.lock().unwrap()[before..].to_vec();
    let n = |what: &str| log.iter().filter(|l| l.contains(what)).count();
    assert_eq!(
        n("PUT /v2/multi/two/blobs/uploads/"),
        0,
        "nothing uploaded twice: {log:#?}"
    );
    assert!(
        n("POST /v2/multi/two/blobs/uploads/?mount=") >= 2,
        "layer and config were mounted from the first destination: {log:#?}"
    );
    assert!(
        n("PUT /v2/multi/one/blobs/uploads/") >= 2,
        "uploaded once, to the first: {log:#?}"
    );
}

/// A registry that answers with a manifest of gigabytes (here 5 MiB) is refused
/// at 4 MiB, as containerd does, without reading the rest.
#[test]
fn manifests_over_4_mib_are_refused() {
    let reg = Registry::start();
    let proxy = FaultProxy::start(&reg.addr, |req| {
        if req.is("GET", "/v2/huge/img/manifests/") {
            let mt = "application/vnd.oci.image.manifest.v1+json".to_string();
            return Fault::RespondWith(200, vec![("Content-Type", mt)], vec![b' '; 5 << 20]);
        }
        Fault::Forward
    });
    let ctx = context(&[("Dockerfile", &format!("FROM {}/huge/img\n", proxy.addr))]);
    let out = run(kiln()
        .args([
            "build",
            "--no-push",
            "--insecure-registry",
            &proxy.addr,
            "--tar-path",
        ])
        .arg(ctx.path().join("o.tar"))
        .arg("--context")
        .arg(ctx.path()));
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("larger than 4 MiB") && err.contains("Dockerfile:1"),
        "{err}"
    );
}

/// A base's layers download side by side (each blob answer takes 300 ms here),
/// and are still applied in order: the top layer's file wins.
#[test]
fn base_layers_download_concurrently_and_apply_in_order() {
    let reg = Registry::start();
    push_busybox_base(&reg, "base");
    let ctx = context(&[
        (
            "Dockerfile",
            &format!(
                "FROM {}/base\nCOPY a /layer\nCOPY b /layer\nCOPY c /layer\n",
                reg.addr
            ),
        ),
        ("a", "a\n"),
        ("b", "b\n"),
        ("c", "c\n"),
    ]);
    let home = tempfile::tempdir().unwrap();
    let out = run(kiln()
        .env("HOME", home.path())
        .args(["build", "--cache=false", "--insecure-registry", &reg.addr])
        .args(["--destination", &format!("{}/multi:1", reg.addr)])
        .arg("--context")
        .arg(ctx.path()));
    assert!(out.status.success(), "{}", stderr(&out));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (now, peak) = (in_flight.clone(), most.clone());
    let proxy = FaultProxy::start(&reg.addr, move |req| {
        if req.is("GET", "/blobs/sha256:") {
            let n = now.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(n, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(300));
            now.fetch_sub(1, Ordering::SeqCst);
        }
        Fault::Forward
    });
    let ctx2 = context(&[(
        "Dockerfile",
        &format!("FROM {}/multi:1\nRUN cat /layer > /seen\n", proxy.addr),
    )]);
    let out_dir = tempfile::tempdir().unwrap();
    let home2 = tempfile::tempdir().unwrap();
    let root = build_cmd_and_unpack(
        kiln()
            .env("HOME", home2.path())
            .args([
                "build",
                "--cache=false",
                "--insecure-registry",
                &proxy.addr,
                "--context",
            ])
            .arg(ctx2.path()),
        out_dir.path(),
    );
    assert_eq!(std::fs::read_to_string(root.join("seen")).unwrap(), "c\n");
    let peak = most.load(Ordering::SeqCst);
    assert!(peak >= 2, "at most {peak} blob download(s) at once");
}

/// A 429 with `Retry-After` on a blob PUT: the upload waits what the registry
/// asks and tries again in a new session, within the retry window, and the
/// image is pushed.
#[test]
fn a_rate_limited_blob_upload_waits_and_retries() {
    let reg = Registry::start();
    let limited = Arc::new(AtomicUsize::new(0));
    let seen = limited.clone();
    let proxy = FaultProxy::start(&reg.addr, move |req| {
        if req.is("PUT", "/blobs/uploads/") && seen.fetch_add(1, Ordering::SeqCst) < 2 {
            return Fault::Respond(429, vec![("Retry-After", "1".into())]);
        }
        Fault::Forward
    });
    let ctx = context(&[("Dockerfile", "FROM scratch\nCOPY a /a\n"), ("a", "a\n")]);
    let out = push_through(&proxy, ctx.path(), "limited", &[]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("as Retry-After asks"), "{err}");
    assert!(
        limited.load(Ordering::SeqCst) >= 3,
        "the PUT was tried again"
    );
    assert!(reg.has_tag("faults/app", "limited"));
}

/// Two destinations: the manifest goes to each by digest before any tag, so a
/// registry that refuses the image leaves no tag anywhere; a tag that fails at
/// the end is named, with the tags that exist.
#[test]
fn a_refused_manifest_leaves_no_tag_and_a_failed_tag_says_which_exist() {
    let reg = Registry::start();
    let mode = Arc::new(AtomicUsize::new(0));
    let m = mode.clone();
    let proxy = FaultProxy::start(&reg.addr, move |req| {
        let refuse = match m.load(Ordering::SeqCst) {
            // The second destination refuses the image itself.
            0 => req.is("PUT", "/v2/multi/two/manifests/"),
            // It takes the image by digest, but refuses the tag.
            _ => req.is("PUT", "/v2/multi/two/manifests/t"),
        };
        if refuse {
            return Fault::Respond(400, vec![]);
        }
        Fault::Forward
    });
    let ctx = context(&[("Dockerfile", "FROM scratch\nCOPY a /a\n"), ("a", "a\n")]);
    let both = |tag: &str| to_two_destinations(&proxy, ctx.path(), tag);
    let out = both("t1");
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("no destination was tagged"), "{err}");
    assert!(!reg.has_tag("multi/one", "t1"), "{err}");
    mode.store(1, Ordering::SeqCst);
    let out = both("t2");
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(&format!("tagged: {}/multi/one:t2", proxy.addr)),
        "{err}"
    );
    assert!(
        err.contains(&format!("not tagged: {}/multi/two:t2", proxy.addr)),
        "{err}"
    );
    assert!(reg.has_tag("multi/one", "t2") && !reg.has_tag("multi/two", "t2"));
}

/// A layer's upload starts with its first compressed bytes, not after its last:
/// the streamed PATCH reaches the registry before the step that writes the layer
/// has ended, and the pushed image is whole. (On a slow link the last layer is
/// then not left to the end; `ci/bench --only-slow-link` measures that.)
#[test]
fn a_layer_goes_up_while_it_is_written() {
    let reg = Registry::start();
    let proxy = FaultProxy::start(&reg.addr, |_| Fault::Forward);
    // Incompressible, so writing the layer takes a while.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let big: Vec<u8> = (0..24 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let ctx = context(&[
        (
            "Dockerfile",
            "FROM scratch\nCOPY big /big\nCOPY small /small\n",
        ),
        ("small", "s\n"),
    ]);
    std::fs::write(ctx.path().join("big"), &big).unwrap();
    let out = push_through(&proxy, ctx.path(), "1", &["--log-format=json"]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let events: Vec<serde_json::Value> = err
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let copy_end = events
        .iter()
        .find(|e| e["event"] == "step" && e["instruction"] == "COPY big /big")
        .and_then(|e| e["time"].as_str())
        .expect("the COPY's end event");
    let copy_end = humantime::parse_rfc3339(copy_end).expect("an RFC 3339 time");
    let arrivals = proxy.arrivals.lock().unwrap().clone();
    let patch = arrivals
        .iter()
        .find(|(what, _)| what.starts_with("PATCH /v2/faults/app/blobs/uploads/"))
        .map(|(_, at)| *at)
        .unwrap_or_else(|| panic!("no streamed upload: {arrivals:#?}"));
    assert!(
        patch < copy_end,
        "the upload began before the layer was finished ({patch:?} vs {copy_end:?})\n{arrivals:#?}"
    );
    let root = unpack(
        &format!("docker://{}/faults/app:1", reg.addr),
        ctx.path().join("check").as_path(),
    );
    assert_eq!(std::fs::read(root.join("big")).unwrap(), big);
}

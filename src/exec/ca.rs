//! The company CA inside a RUN step, for that step only: a bundle made of the
//! image's own system roots (or, while the image has none, the job's), plus the
//! company CAs, at a path kiln owns in the step's `/dev` (never in a layer, and
//! gone after the step), and the environment variables and config hooks each
//! common client reads to find it.
//!
//! It owns the bundle's content, its place and the client hooks. It does not
//! touch the image's trust store, so nothing of it survives the step, and an
//! `update-ca-certificates` in the step cannot drop it.

use std::path::Path;

use crate::fs::resolve::{host_path, resolve, Confine};

/// The files, by name in the step's `/dev`.
pub const BUNDLE: &str = "kiln-ca-certificates.crt";
pub const APT_CONF: &str = "kiln-apt.conf";
pub const WGETRC: &str = "kiln-wgetrc";

/// Where images keep their system bundle (Debian/Ubuntu/Alpine, RHEL/Fedora,
/// Alpine's libressl, SUSE).
pub const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
    "/etc/ssl/ca-bundle.pem",
];

/// (name in /dev, content) of the files a step gets.
pub fn files(
    rootfs: &Path,
    company_pem: &str,
    image_env: &[(String, String)],
) -> Vec<(&'static str, Vec<u8>)> {
    let in_image = |p: &str| -> Option<Vec<u8>> {
        let rel = resolve(rootfs, p, true, Confine::Clamp).ok()?;
        let data = std::fs::read(host_path(rootfs, &rel)).ok()?;
        (!data.is_empty()).then_some(data)
    };
    let own = image_env
        .iter()
        .find(|(k, _)| k == "SSL_CERT_FILE")
        .and_then(|(_, v)| in_image(v));
    let roots = own
        .or_else(|| SYSTEM_BUNDLES.iter().find_map(|p| in_image(p)))
        // No roots in the image yet (it has not installed ca-certificates): the
        // job's, so that public hosts keep working beside the company's.
        .or_else(|| SYSTEM_BUNDLES.iter().find_map(|p| std::fs::read(p).ok()))
        .unwrap_or_default();
    let mut bundle = roots;
    if !bundle.is_empty() && !bundle.ends_with(b"\n") {
        bundle.push(b'\n');
    }
    bundle.extend_from_slice(company_pem.as_bytes());
    let path = format!("/dev/{BUNDLE}");
    let mut apt = format!("Acquire::https::CaInfo \"{path}\";\n");
    if let Some((_, prev)) = image_env.iter().find(|(k, _)| k == "APT_CONFIG") {
        // The image's own APT_CONFIG still applies.
        apt = format!("#include \"{prev}\";\n{apt}");
    }
    vec![
        (BUNDLE, bundle),
        (APT_CONF, apt.into_bytes()),
        (WGETRC, format!("ca_certificate = {path}\n").into_bytes()),
    ]
}

/// Point the step's clients at the bundle: OpenSSL and Go (`SSL_CERT_FILE`),
/// curl, Python requests and pip, git, Node, the AWS tools, apt and wget.
pub fn set_env(env: &mut Vec<(String, String)>) {
    let bundle = format!("/dev/{BUNDLE}");
    let mut set = |k: &str, v: String| {
        env.retain(|(e, _)| e != k);
        env.push((k.to_string(), v));
    };
    for k in [
        "SSL_CERT_FILE",
        "CURL_CA_BUNDLE",
        "REQUESTS_CA_BUNDLE",
        "PIP_CERT",
        "GIT_SSL_CAINFO",
        "NODE_EXTRA_CA_CERTS",
        "AWS_CA_BUNDLE",
    ] {
        set(k, bundle.clone());
    }
    set("APT_CONFIG", format!("/dev/{APT_CONF}"));
    set("WGETRC", format!("/dev/{WGETRC}"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundle_is_the_images_roots_and_the_company_cas() {
        let root = tempfile::tempdir().unwrap();
        let certs = root.path().join("etc/ssl/certs");
        std::fs::create_dir_all(&certs).unwrap();
        std::fs::write(certs.join("ca-certificates.crt"), "IMAGE-ROOTS").unwrap();
        let f = files(root.path(), "COMPANY\n", &[]);
        assert_eq!(f[0].1, b"IMAGE-ROOTS\nCOMPANY\n");
        assert_eq!(
            String::from_utf8_lossy(&f[1].1),
            "Acquire::https::CaInfo \"/dev/kiln-ca-certificates.crt\";\n"
        );
        let f = files(
            root.path(),
            "C\n",
            &[("APT_CONFIG".into(), "/etc/apt/mine.conf".into())],
        );
        assert!(String::from_utf8_lossy(&f[1].1).starts_with("#include \"/etc/apt/mine.conf\";"));
    }

    #[test]
    fn clients_are_pointed_at_it_and_image_values_replaced() {
        let mut env = vec![("SSL_CERT_FILE".to_string(), "/x".to_string())];
        set_env(&mut env);
        let get = |k: &str| env.iter().find(|(e, _)| e == k).map(|(_, v)| v.as_str());
        assert_eq!(get("SSL_CERT_FILE"), Some("/dev/kiln-ca-certificates.crt"));
        assert_eq!(
            get("NODE_EXTRA_CA_CERTS"),
            Some("/dev/kiln-ca-certificates.crt")
        );
        assert_eq!(get("APT_CONFIG"), Some("/dev/kiln-apt.conf"));
        assert_eq!(env.iter().filter(|(e, _)| e == "SSL_CERT_FILE").count(), 1);
    }
}

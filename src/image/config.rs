//! The image configuration (OCI image spec `config.json`, plus the Docker fields
//! that runtimes honour: Healthcheck, Shell, OnBuild).
//!
//! Fields kiln does not model are kept as they came from the base image
//! (`extra`), so nothing a base image carries is silently dropped. Maps are
//! ordered, so the same config always serializes to the same bytes.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ImageConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    pub architecture: String,
    pub os: String,
    #[serde(rename = "os.version", skip_serializing_if = "Option::is_none")]
    pub os_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default)]
    pub config: RunConfig,
    pub rootfs: RootFs,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<History>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct RunConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volumes: Option<BTreeMap<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shell: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_build: Option<Vec<String>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Healthcheck {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test: Option<Vec<String>>,
    /// Durations in nanoseconds, as Docker stores them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_period: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_interval: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retries: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

impl Default for RootFs {
    fn default() -> Self {
        RootFs {
            kind: "layers".to_string(),
            diff_ids: vec![],
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct History {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
}

/// The PATH BuildKit puts in an image that has none (`FROM scratch`, or a base
/// without one), and that a RUN step gets.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

impl ImageConfig {
    /// `FROM scratch` as BuildKit starts it: WorkingDir `/` and the default PATH.
    pub fn scratch(os: &str, arch: &str, variant: Option<&str>) -> ImageConfig {
        let mut c = ImageConfig {
            architecture: arch.to_string(),
            os: os.to_string(),
            variant: variant.map(str::to_string),
            ..Default::default()
        };
        c.config.working_dir = Some("/".into());
        c.ensure_path();
        c
    }

    /// A base image's config as a build starts from it, as BuildKit reads it:
    /// the empty strings that buildah's and podman's Docker format and Docker's
    /// classic builder write for unset fields (`"WorkingDir": ""`, `"User": ""`)
    /// mean unset (Go's `omitempty` drops them again on output), and an image
    /// without PATH gets the default one.
    /// The platform the config says, normalized.
    pub fn platform(&self) -> crate::platform::Platform {
        crate::platform::Platform::new(&self.os, &self.architecture, self.variant.as_deref())
    }

    pub fn as_base(&mut self) {
        for f in [
            &mut self.config.user,
            &mut self.config.working_dir,
            &mut self.config.stop_signal,
        ] {
            if f.as_deref() == Some("") {
                *f = None;
            }
        }
        self.ensure_path();
    }

    /// Append the default PATH when the environment has none (BuildKit does
    /// this for every stage; Windows images are left to the OS).
    fn ensure_path(&mut self) {
        if self.os != "windows" && !self.env_pairs().iter().any(|(k, _)| k == "PATH") {
            self.set_env("PATH", DEFAULT_PATH);
        }
    }

    /// Environment as (key, value) pairs, in order.
    pub fn env_pairs(&self) -> Vec<(String, String)> {
        self.config
            .env
            .iter()
            .flatten()
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (kv.clone(), String::new()),
            })
            .collect()
    }

    /// Set one variable, replacing an earlier value in place.
    pub fn set_env(&mut self, key: &str, value: &str) {
        let env = self.config.env.get_or_insert_with(Vec::new);
        let entry = format!("{key}={value}");
        match env
            .iter_mut()
            .find(|kv| kv.split_once('=').map(|(k, _)| k) == Some(key) || kv.as_str() == key)
        {
            Some(slot) => *slot = entry,
            None => env.push(entry),
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        // Serializing plain data to JSON cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_unknown_fields_and_docker_extensions() {
        let src = r#"{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/bin"],"Hostname":"x","Healthcheck":{"Test":["CMD","true"],"Interval":5000000000}},"rootfs":{"type":"layers","diff_ids":[]},"docker_version":"24"}"#;
        let c: ImageConfig = serde_json::from_str(src).unwrap();
        assert_eq!(
            c.extra.get("docker_version").and_then(Value::as_str),
            Some("24")
        );
        assert_eq!(
            c.config.extra.get("Hostname").and_then(Value::as_str),
            Some("x")
        );
        let back = String::from_utf8(c.to_bytes()).unwrap();
        assert!(back.contains("\"docker_version\":\"24\""));
        assert!(back.contains("\"Interval\":5000000000"));
    }

    #[test]
    fn set_env_replaces_in_place() {
        let mut c = ImageConfig::default();
        c.set_env("A", "1");
        c.set_env("B", "2");
        c.set_env("A", "3");
        assert_eq!(
            c.config.env,
            Some(vec!["A=3".to_string(), "B=2".to_string()])
        );
    }

    #[test]
    fn scratch_starts_as_buildkit_starts_it() {
        let c = ImageConfig::scratch("linux", "arm64", None);
        assert_eq!(c.config.working_dir.as_deref(), Some("/"));
        assert_eq!(c.config.env, Some(vec![format!("PATH={DEFAULT_PATH}")]));
    }

    #[test]
    fn a_base_reads_empty_fields_as_unset_and_gets_a_path() {
        // As buildah's Docker format writes an image with nothing set.
        let src = r#"{"architecture":"amd64","os":"linux","config":{"Hostname":"","User":"","Env":null,"Cmd":null,"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":null,"StopSignal":""},"rootfs":{"type":"layers","diff_ids":[]}}"#;
        let mut c: ImageConfig = serde_json::from_str(src).unwrap();
        c.as_base();
        assert_eq!(c.config.working_dir, None);
        assert_eq!(c.config.user, None);
        assert_eq!(c.config.stop_signal, None);
        assert_eq!(c.config.env, Some(vec![format!("PATH={DEFAULT_PATH}")]));
        // A PATH of its own is kept, and nothing is added beside it.
        let mut d: ImageConfig = serde_json::from_str(
            r#"{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/x","A=1"]},"rootfs":{"type":"layers"}}"#,
        )
        .unwrap();
        d.as_base();
        assert_eq!(d.config.env, Some(vec!["PATH=/x".into(), "A=1".into()]));
    }
}

//! Where pulls go: `--registry-mirror`, `--registry-map`,
//! `--skip-default-registry-fallback` and `--dependency-proxy`, with their
//! environment variables, into the engine's [`PullSources`].

use crate::engine::mirrors::{parse_map, PullSources};
use anyhow::{bail, Result};
use clap::Args;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum DependencyProxy {
    /// `group` when GitLab's Dependency Proxy variables are set.
    Auto,
    /// `$CI_DEPENDENCY_PROXY_GROUP_IMAGE_PREFIX`.
    Group,
    /// `$CI_DEPENDENCY_PROXY_DIRECT_GROUP_IMAGE_PREFIX`.
    Direct,
    #[default]
    Off,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// A Docker Hub mirror, HOST[:PORT][/PATH] (http://HOST for a plain-HTTP one),
    /// tried before Docker Hub for pulls only. Repeatable.
    #[arg(
        long = "registry-mirror",
        value_name = "HOST[/PATH]",
        env = "KILN_REGISTRY_MIRROR",
        value_delimiter = ','
    )]
    pub registry_mirror: Vec<String>,
    /// Pull ORIG (a registry, or registry/path) from NEW first (then NEW2...), for
    /// any registry. Repeatable.
    #[arg(
        long = "registry-map",
        value_name = "ORIG=NEW[;NEW2]",
        env = "KILN_REGISTRY_MAP",
        value_delimiter = ','
    )]
    pub registry_map: Vec<String>,
    /// Do not fall back to the original registry when every mirror or map fails.
    #[arg(long)]
    pub skip_default_registry_fallback: bool,
    /// Pull Docker Hub images through GitLab's Dependency Proxy, with no
    /// Dockerfile change.
    #[arg(long, value_enum, default_value_t = DependencyProxy::Off, env = "KILN_DEPENDENCY_PROXY", value_name = "WHEN")]
    pub dependency_proxy: DependencyProxy,
}

impl PullArgs {
    /// The hosts of mirrors written `http://…`: reached over plain HTTP.
    pub fn plain_http_hosts(&self) -> Vec<String> {
        self.registry_mirror
            .iter()
            .filter_map(|m| m.trim().strip_prefix("http://"))
            .map(|plain| plain.split('/').next().unwrap_or(plain).to_string())
            .collect()
    }

    /// The pull sources.
    pub fn sources(&self) -> Result<PullSources> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let proxy = match self.dependency_proxy {
            DependencyProxy::Off => None,
            DependencyProxy::Group => Some(env("CI_DEPENDENCY_PROXY_GROUP_IMAGE_PREFIX").ok_or_else(|| {
                anyhow::anyhow!("--dependency-proxy group: CI_DEPENDENCY_PROXY_GROUP_IMAGE_PREFIX is not set (it is in GitLab jobs of projects in a group)")
            })?),
            DependencyProxy::Direct => Some(env("CI_DEPENDENCY_PROXY_DIRECT_GROUP_IMAGE_PREFIX").ok_or_else(|| {
                anyhow::anyhow!("--dependency-proxy direct: CI_DEPENDENCY_PROXY_DIRECT_GROUP_IMAGE_PREFIX is not set")
            })?),
            DependencyProxy::Auto => env("CI_DEPENDENCY_PROXY_GROUP_IMAGE_PREFIX"),
        };
        let mut mirrors = Vec::new();
        for m in self
            .registry_mirror
            .iter()
            .map(|m| m.trim())
            .filter(|m| !m.is_empty())
        {
            let bare = m
                .trim_start_matches("http://")
                .trim_start_matches("https://");
            if bare.is_empty() || bare.starts_with('/') {
                bail!("--registry-mirror {m:?}: give HOST[:PORT][/PATH]");
            }
            mirrors.push(bare.to_string());
        }
        let maps = self
            .registry_map
            .iter()
            .filter(|m| !m.trim().is_empty())
            .map(|m| parse_map(m).map_err(anyhow::Error::msg))
            .collect::<Result<Vec<_>>>()?;
        Ok(PullSources {
            mirrors,
            maps,
            dependency_proxy: proxy,
            no_fallback: self.skip_default_registry_fallback,
        })
    }
}

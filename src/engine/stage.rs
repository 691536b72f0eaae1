//! A stage's state while and after it is built (config, layers with where to
//! fetch each, the rootfs when one is materialized, ARGs in scope, SHELL, cache
//! key), and the [`Sources`] a `COPY --from` reads: built stages and pulled images.
//!
//! It owns how a step's result joins a stage (a built or cached layer, or none).
//! It does not build, pull or look anything up.

use super::cache;
use crate::dockerfile::Vars;
use crate::fs::Rootfs;
use crate::image::config::History;
use crate::image::manifest::{LayerDesc, Platform};
use crate::image::{ImageConfig, Reference};
use std::collections::HashMap;

/// A layer of a stage: its descriptor, where to fetch it if it is not local,
/// and the Dockerfile instruction that brought it in (for the SBOM).
#[derive(Debug, Clone)]
pub struct Layer {
    pub desc: LayerDesc,
    pub origin: Option<Reference>,
    pub made_by: Option<MadeBy>,
}

/// The Dockerfile instruction (a step, or the FROM of a base) behind a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MadeBy {
    pub line: usize,
    pub text: String,
}

/// The state of a stage while (and after) it is built.
pub struct Stage {
    pub config: ImageConfig,
    pub layers: Vec<Layer>,
    pub rootfs: Option<Rootfs>,
    /// ARGs declared in this stage, with their values.
    pub args: Vec<(String, String)>,
    pub shell: Vec<String>,
    /// Cache key of the last layer step (or the base's identity): the parent of
    /// the next step's key.
    pub key: String,
    /// The base image as written and its manifest digest, for the
    /// `org.opencontainers.image.base.*` annotations (None for scratch).
    pub base: Option<(String, String)>,
    /// How many of `layers` came with FROM (the rest are the stage's steps').
    pub base_layers: usize,
}

impl Stage {
    /// `FROM scratch` for a platform.
    pub fn scratch(p: &Platform) -> Stage {
        Stage {
            config: ImageConfig::scratch(&p.os, &p.arch, p.variant.as_deref()),
            layers: vec![],
            rootfs: None,
            args: vec![],
            shell: vec![],
            key: format!("scratch/{p}"),
            base: None,
            base_layers: 0,
        }
    }

    /// A stage that starts where this one ends (`FROM earlier-stage`): same
    /// config, layers and key; a rootfs of its own when it needs one.
    pub fn derived(&self) -> Stage {
        Stage {
            config: self.config.clone(),
            layers: self.layers.clone(),
            rootfs: None,
            args: vec![],
            shell: self.shell.clone(),
            key: self.key.clone(),
            base: self.base.clone(),
            base_layers: self.layers.len(),
        }
    }

    /// The variables a word of this stage expands with: ARGs, then ENV over them.
    pub fn vars(&self) -> Vars {
        let mut v: Vars = self.args.iter().cloned().collect();
        for (k, val) in self.config.env_pairs() {
            v.insert(k, val);
        }
        v
    }

    /// The user steps run as: USER, or root.
    pub fn user(&self) -> String {
        self.config
            .config
            .user
            .clone()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| "0".into())
    }

    /// WORKDIR, or `/`.
    pub fn workdir(&self) -> String {
        self.config
            .config
            .working_dir
            .clone()
            .unwrap_or_else(|| "/".into())
    }

    /// Append a history entry.
    pub fn history(&mut self, now: &str, created_by: &str, empty: bool) {
        self.config.history.push(History {
            created: Some(now.to_string()),
            created_by: Some(created_by.to_string()),
            comment: Some("kiln".into()),
            empty_layer: empty,
            ..Default::default()
        });
    }

    /// A layer step's result joins the stage: its layer, or, when it changed
    /// nothing, an empty-layer mark on its history entry. Returns the step note.
    pub fn add_layer(
        &mut self,
        desc: Option<LayerDesc>,
        origin: Option<Reference>,
        made_by: MadeBy,
        history_idx: usize,
        verb: &str,
    ) -> String {
        match desc {
            Some(desc) => {
                let note = format!("{verb} {}", crate::report::human_bytes(desc.size));
                self.config.rootfs.diff_ids.push(desc.diff_id.clone());
                self.layers.push(Layer {
                    desc,
                    origin,
                    made_by: Some(made_by),
                });
                note
            }
            None => {
                if let Some(h) = self.config.history.get_mut(history_idx) {
                    h.empty_layer = true;
                }
                format!("{verb} no changes")
            }
        }
    }

    /// A cache hit joins the stage without touching a filesystem.
    pub fn add_cached(
        &mut self,
        entry: &cache::Entry,
        origin: Option<Reference>,
        made_by: MadeBy,
        history_idx: usize,
        verb: &str,
    ) -> String {
        self.add_layer(
            entry.layer.as_ref().map(|l| l.desc()),
            origin,
            made_by,
            history_idx,
            verb,
        )
    }
}

/// What a `COPY --from` names.
#[derive(Debug, Clone)]
pub enum SourceKey {
    Stage(usize),
    Image(String),
    /// A named context that is a directory (by name): nothing to build or pull.
    Dir(String),
}

/// Built stages (by index) and images pulled for `COPY --from` (by name).
#[derive(Default)]
pub struct Sources {
    pub stages: Vec<Option<Stage>>,
    pub images: HashMap<String, Stage>,
}

impl Sources {
    pub fn new(stages: usize) -> Sources {
        Sources {
            stages: (0..stages).map(|_| None).collect(),
            images: HashMap::new(),
        }
    }

    pub fn built(&self, idx: usize) -> bool {
        self.stages[idx].is_some()
    }

    pub fn get(&self, key: &SourceKey) -> Option<&Stage> {
        match key {
            SourceKey::Stage(j) => self.stages[*j].as_ref(),
            SourceKey::Image(n) => self.images.get(n),
            SourceKey::Dir(_) => None,
        }
    }

    /// Take a source out (to give its rootfs to a step); [`Sources::put`] it back.
    pub fn take(&mut self, key: &SourceKey) -> Option<Stage> {
        match key {
            SourceKey::Stage(j) => self.stages[*j].take(),
            SourceKey::Image(n) => self.images.remove(n),
            SourceKey::Dir(_) => None,
        }
    }

    pub fn put(&mut self, key: &SourceKey, s: Stage) {
        match key {
            SourceKey::Stage(j) => self.stages[*j] = Some(s),
            SourceKey::Image(n) => {
                self.images.insert(n.clone(), s);
            }
            SourceKey::Dir(_) => {}
        }
    }
}

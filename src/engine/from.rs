//! Where a stage starts and what `--from` names: scratch, an earlier stage,
//! an image pulled, or a named build context (`--build-context`).

use super::*;

impl Engine<'_> {
    /// FROM: the stage's starting state, from scratch, an earlier stage or an image.
    pub(super) async fn start(&mut self, idx: usize) -> Result<Stage> {
        let t0 = Instant::now();
        let line = self.plan.stages[idx].line;
        let total = self.plan.stages[idx].steps.len() + 1;
        let name = self.plan.from_name(idx)?;
        let base = self.plan.base(idx)?;
        let platform = self.plan.stage_platform(idx)?;
        let (mut stage, note) = match base {
            Base::Scratch => (Stage::scratch(&platform), String::new()),
            Base::Stage(j) => {
                self.build_stage(j).await?;
                let pass_on = self
                    .target
                    .is_some_and(|t| self.plan.sole_reader(j, idx, t));
                let s = self.sources.stages[j]
                    .as_mut()
                    .ok_or_else(|| anyhow!("stage {j} not built"))?;
                let mut d = s.derived();
                // The only stage that reads j takes its rootfs as it is, rather
                // than extracting j's layers again.
                if pass_on {
                    d.rootfs = s.rootfs.take();
                }
                (d, String::new())
            }
            Base::Image(r, _) => {
                let s = self
                    .sess
                    .pull(&r, &platform, self.cache.local.as_ref())
                    .await
                    .map_err(|e| self.plan.err(line, format!("FROM {name}: {e:#}")))?;
                self.start_on_image(s, line, &name)
            }
            Base::Named(n) => {
                let ctx = self.named_context(line, &n)?;
                let s = named::image_stage(&self.sess, &n, &ctx, &platform, self.cache.local.as_ref())
                    .await
                    .map_err(|e| self.plan.err(line, format!("FROM {name}: {e:#}")))?
                    .ok_or_else(|| {
                        self.plan.err(
                            line,
                            format!("FROM {name}: the build context {n} is a directory; FROM takes an image context (docker-image://REF or oci-layout://DIR); use the directory with COPY --from={n}"),
                        )
                    })?;
                self.start_on_image(s, line, &name)
            }
        };
        stage.shell = stage
            .config
            .config
            .shell
            .clone()
            .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()]);
        stage.args.clear();
        self.sess.report.step(
            &self.plan.label(idx, 1, total),
            &format!("FROM {name}"),
            t0.elapsed(),
            &note,
        );
        Ok(stage)
    }

    /// A pulled (or named-context) image as the stage's start: its layers made
    /// by this FROM, for the SBOM, and the base's line in the log.
    fn start_on_image(&self, mut s: Stage, line: usize, name: &str) -> (Stage, String) {
        for l in &mut s.layers {
            l.made_by = Some(stage::MadeBy {
                line,
                text: crate::clip::clip_to(&format!("FROM {name}"), 200),
            });
        }
        let n = format!("{} layer(s)", s.layers.len());
        if let Some((written, digest)) = &s.base {
            self.sess.report.base(written, digest);
        }
        (s, n)
    }

    /// The named build context `name` (known to exist: the plan found it).
    pub(super) fn named_context(&self, line: usize, name: &str) -> Result<request::NamedContext> {
        self.sess
            .req
            .build_contexts
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, c)| c.clone())
            .ok_or_else(|| {
                self.plan
                    .err(line, format!("no build context named {name}"))
            })
    }

    /// The directory of the named context `name` (a `SourceKey::Dir`).
    pub(super) fn named_dir(&self, line: usize, name: &str) -> Result<PathBuf> {
        match self.named_context(line, name)? {
            request::NamedContext::Dir(d) => Ok(d),
            _ => Err(self
                .plan
                .err(line, format!("build context {name} is not a directory"))),
        }
    }

    /// What a `COPY --from=name` reads: a stage (built now if needed), or an image
    /// (its manifest and config; layers only when the step really runs).
    pub(super) async fn resolve_from(
        &mut self,
        idx: usize,
        line: usize,
        name: &str,
    ) -> Result<SourceKey> {
        if let Some(j) = self.plan.stage_index(name, idx) {
            self.build_stage(j).await?;
            return Ok(SourceKey::Stage(j));
        }
        if let Some(e) = self.plan.not_a_stage(idx, line, name) {
            return Err(e);
        }
        if let Some(n) = self.plan.named(name) {
            let ctx = self.named_context(line, &n)?;
            if let request::NamedContext::Dir(_) = ctx {
                return Ok(SourceKey::Dir(n));
            }
            if !self.sources.images.contains_key(&n) {
                let s = named::image_stage(
                    &self.sess,
                    &n,
                    &ctx,
                    &self.plan.platform(),
                    self.cache.local.as_ref(),
                )
                .await
                .map_err(|e| self.plan.err(line, format!("--from={name}: {e:#}")))?
                .ok_or_else(|| anyhow!("--from={name}: no image"))?;
                self.sources.images.insert(n.clone(), s);
            }
            return Ok(SourceKey::Image(n));
        }
        if !self.sources.images.contains_key(name) {
            let r = Reference::parse(name).map_err(|_| {
                self.plan.err(
                    line,
                    format!(
                        "--from={name}: no stage has that name, and it is not an image reference"
                    ),
                )
            })?;
            let s = self
                .sess
                .pull(&r, &self.plan.platform(), self.cache.local.as_ref())
                .await
                .map_err(|e| {
                    self.plan.err(
                        line,
                        format!("--from={name}: no stage has that name, and pulling it as an image failed: {e:#}"),
                    )
                })?;
            self.sources.images.insert(name.to_string(), s);
        }
        Ok(SourceKey::Image(name.to_string()))
    }
}

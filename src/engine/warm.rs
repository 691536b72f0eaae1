//! `kiln warm`: the build's planning and cache lookups without its work, to fill
//! a cache dir (base images with every layer, and the cache entries a build of
//! the Dockerfile would hit) for cache-warming CI jobs.

use super::*;

/// What `kiln warm` did.
pub struct WarmOutcome {
    pub images: usize,
    pub entries: usize,
    pub missing: usize,
    pub downloaded: u64,
}

/// `kiln warm`: fetch base images (manifests, configs, every layer) and the cache
/// entries the Dockerfile would hit into the cache dir. Running it again downloads
/// only what is missing.
pub async fn warm(req: &BuildRequest, report: &Reporter) -> Result<WarmOutcome> {
    let df = if req.dockerfile.as_os_str().is_empty() {
        None
    } else {
        Some(read_dockerfile(req)?)
    };
    let mut sess = Session::new(req, report)?;
    let mut cache = StepCache::new(&sess)?;
    let mut images = 0;
    // Each platform asked for (`--platform a,b`), else the host's.
    let platforms: Vec<Option<&Platform>> = match req.platforms.as_slice() {
        [] => vec![None],
        list => list.iter().map(Some).collect(),
    };
    for p in platforms {
        let platform = p.cloned().unwrap_or_else(Platform::host);
        for r in &req.warm_images {
            let t = Instant::now();
            let s = sess
                .pull(r, &platform, cache.local.as_ref())
                .await
                .with_context(|| format!("warming {r} for {platform}"))?;
            report.step(
                "warm",
                &format!("{r} ({platform})"),
                t.elapsed(),
                &format!("{} layer(s)", s.layers.len()),
            );
        }
        images += req.warm_images.len();
        let Some(df) = &df else { continue };
        let plan = Plan::new(df.clone(), plan_input(req, p))?;
        // Every FROM of the Dockerfile (all stages), unless --target narrows it.
        let roots: Vec<usize> = if req.target.is_some() {
            vec![plan.target]
        } else {
            (0..plan.stages.len()).collect()
        };
        let mut e = Engine::new(sess, plan, cache, None);
        for idx in e.plan.order(&roots) {
            e.build_stage(idx).await?;
        }
        images += e
            .plan
            .stages
            .iter()
            .zip(&e.sources.stages)
            .filter(|(d, s)| s.is_some() && !d.image.eq_ignore_ascii_case("scratch"))
            .count();
        cache = e.cache;
        sess = e.sess;
    }
    cache.save_file_digests(&sess);
    cache.saved().await;
    Ok(WarmOutcome {
        images,
        entries: cache.hits,
        missing: cache.misses,
        downloaded: sess.client.counters.snapshot().bytes_down,
    })
}

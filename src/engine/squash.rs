//! kaniko's `--single-snapshot`: the image is its base's layers and one more,
//! which holds everything the stage's steps changed. The steps are built (and
//! cached) one by one as usual; at the end their layers are applied over the
//! base's files in a fresh root, and the difference becomes the one layer.

use super::session::Session;
use super::stage::{Layer, Stage};
use crate::fs::Rootfs;
use crate::image::config::History;
use crate::image::manifest::LayerDesc;
use anyhow::{anyhow, Result};
use std::time::Instant;

/// Replace the stage's step layers by one layer of their combined changes.
pub async fn single_snapshot(sess: &Session<'_>, stage: &mut Stage) -> Result<()> {
    let t = Instant::now();
    let base = stage.base_layers.min(stage.layers.len());
    let steps = stage.layers.len() - base;
    if steps == 0 {
        return Ok(());
    }
    let mut blobs = Vec::new();
    for l in &stage.layers {
        blobs.push((sess.blob(l).await?, l.desc.diff_id.clone()));
    }
    let dir = sess.next_rootfs_dir();
    let (store, codec, clamp) = (sess.store.clone(), sess.codec(), sess.req.source_date_epoch);
    let built = tokio::task::spawn_blocking(move || -> Result<_> {
        let mut root = Rootfs::create(&dir)?;
        for (blob, diff_id) in &blobs[..base] {
            root.apply_verified(blob, diff_id)?;
        }
        root.ensure_baseline()?;
        for (blob, _) in &blobs[base..] {
            root.apply_over_baseline(blob)?;
        }
        let built = root.commit_changes(&store, codec, clamp)?;
        drop(root);
        let _ = std::fs::remove_dir_all(&dir);
        Ok(built)
    })
    .await
    .map_err(|e| anyhow!("--single-snapshot: {e}"))??;
    // The steps' history entries stay, as layers no more (the last `steps`
    // entries with a layer); one entry for the layer that holds them all.
    for h in stage
        .config
        .history
        .iter_mut()
        .rev()
        .filter(|h| !h.empty_layer)
        .take(steps)
    {
        h.empty_layer = true;
    }
    stage.layers.truncate(base);
    stage.config.rootfs.diff_ids.truncate(base);
    let note = match built {
        Some(b) => {
            let note = format!("BUILT {}", crate::report::human_bytes(b.size));
            stage.config.rootfs.diff_ids.push(b.diff_id.clone());
            stage.layers.push(Layer {
                desc: LayerDesc {
                    digest: b.digest,
                    size: b.size,
                    media_type: b.media_type,
                    diff_id: b.diff_id,
                },
                origin: None,
                made_by: None,
            });
            stage.config.history.push(History {
                created: Some(sess.now.clone()),
                created_by: Some(format!(
                    "kiln --single-snapshot: the changes of {steps} step layer(s)"
                )),
                comment: Some("kiln".into()),
                empty_layer: false,
                ..Default::default()
            });
            note
        }
        None => "no changes".to_string(),
    };
    sess.report.step(
        "snapshot",
        &format!("--single-snapshot: {steps} step layer(s) in one"),
        t.elapsed(),
        &note,
    );
    Ok(())
}

//! Live content reload: a watcher on the intents file and the knowledge-base
//! directory. A burst of saves is coalesced into one reload; the new content
//! is loaded and compiled off the async workers and swapped in atomically
//! (decisions in flight finish on the snapshot they started with). A file
//! that does not load leaves the previous content serving; the error, with
//! file and line, is logged, counted and shown by `/healthz`.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::App;
use crate::content::Content;

/// Quiet time after the last change before reloading.
const SETTLE: Duration = Duration::from_millis(150);
/// Longest a stream of changes can delay a reload.
const MAX_DELAY: Duration = Duration::from_secs(2);

/// Starts watching; the returned watcher must be kept alive.
pub fn watch(app: App, intents: PathBuf, kb: PathBuf) -> notify::Result<RecommendedWatcher> {
    let (tx, rx) = mpsc::channel::<()>(1);
    let intents_abs = std::fs::canonicalize(&intents).unwrap_or_else(|_| intents.clone());
    let kb_abs = std::fs::canonicalize(&kb).unwrap_or_else(|_| kb.clone());
    let (watch_intents, watch_kb) = (intents_abs.clone(), kb_abs.clone());
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if event.kind.is_access() {
            return;
        }
        let relevant = event
            .paths
            .iter()
            .any(|p| p == &watch_intents || p.starts_with(&watch_kb));
        if relevant {
            // A full channel already holds a pending reload: nothing is lost.
            let _ = tx.try_send(());
        }
    })?;
    // Editors often save by writing a new file and renaming it over the old
    // one, so the intents file is watched through its directory.
    let intents_dir = intents_abs
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    watcher.watch(intents_dir, RecursiveMode::NonRecursive)?;
    watcher.watch(&kb_abs, RecursiveMode::Recursive)?;
    tokio::spawn(reload_loop(app, rx, intents, kb));
    Ok(watcher)
}

async fn reload_loop(app: App, mut rx: mpsc::Receiver<()>, intents: PathBuf, kb: PathBuf) {
    while rx.recv().await.is_some() {
        let started = tokio::time::Instant::now();
        loop {
            match tokio::time::timeout(SETTLE, rx.recv()).await {
                Ok(Some(())) if started.elapsed() < MAX_DELAY => continue,
                Ok(None) => return,
                _ => break,
            }
        }
        let (i, k) = (intents.clone(), kb.clone());
        let current = app.content();
        let loaded =
            tokio::task::spawn_blocking(move || Content::reload(&i, &k, Some(&current))).await;
        let stats = &app.inner.reloads;
        match loaded {
            Ok(Ok(content)) => {
                let articles = content.kb.documents().count();
                let intents_n = content.intents.intents.len();
                app.set_content(content);
                stats.ok.fetch_add(1, Ordering::Relaxed);
                *stats.last_error.lock().expect("reload error lock") = None;
                tracing::info!(
                    intents = intents_n,
                    articles,
                    took_ms = started.elapsed().as_millis() as u64,
                    "content reloaded"
                );
            }
            Ok(Err(e)) => {
                stats.failed.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    file = %e.file.display(),
                    line = e.line,
                    reason = %e.message,
                    "content not reloaded; the previous content keeps serving"
                );
                *stats.last_error.lock().expect("reload error lock") = Some(e.to_string());
            }
            Err(e) => tracing::error!(error = %e, "content reload task failed"),
        }
    }
}

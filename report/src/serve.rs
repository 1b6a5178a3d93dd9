//! `faultline serve`: a small web UI over a results folder. The front page lists runs (name,
//! time, target, verdict, duration) newest first; each links to its report and its files.
//!
//! It binds 127.0.0.1 by default: results hold histories and logs of the system under test,
//! which are not for the whole network unless the user says so with `--bind`. Only files under
//! the results folder are served (no `..`, no symlink leading out of it), every response
//! carries the report's Content-Security-Policy and `nosniff`, and a run whose report is
//! missing (a run from before reports, or one whose report failed) gets it built on first
//! request.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use axum::body::Body;
use axum::extract::{Path as UrlPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use faultline_checker::text::for_terminal;
use serde::Deserialize;
use tower::ServiceExt as _;
use tower_http::services::ServeFile;

use crate::escape::html;
use crate::html::{content_security_policy, pretty_stamp, url_path};

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  faultline serve
  faultline serve --results-dir /var/faultline/results --port 9000")]
pub struct ServeArgs {
    /// Where runs are stored.
    #[arg(long, default_value = "results", value_name = "DIR")]
    pub results_dir: PathBuf,
    /// Port to listen on; 0 picks a free one (the address is printed).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Address to listen on. The default serves this machine only; 0.0.0.0 serves everyone
    /// who can reach it.
    #[arg(long, default_value = "127.0.0.1", value_name = "ADDR")]
    pub bind: IpAddr,
}

/// `faultline serve`: serves until stopped; or says why it cannot.
pub fn run(args: ServeArgs) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(serve(args))
}

struct ServerState {
    root: PathBuf,
    /// results.json summaries by path, valid while the file's modification time is the same
    /// (a failing run's results.json can be megabytes; the front page reads every run's).
    cache: Mutex<HashMap<PathBuf, (SystemTime, RunSummary)>>,
    /// One report build at a time.
    building: tokio::sync::Mutex<()>,
}

async fn serve(args: ServeArgs) -> Result<(), String> {
    let root = std::fs::canonicalize(&args.results_dir).map_err(|e| {
        format!(
            "--results-dir {}: {e} (run `faultline test` first, or point --results-dir at a \
             results folder)",
            args.results_dir.display()
        )
    })?;
    if !root.is_dir() {
        return Err(format!(
            "--results-dir {}: not a folder",
            args.results_dir.display()
        ));
    }
    let listener = tokio::net::TcpListener::bind(SocketAddr::new(args.bind, args.port))
        .await
        .map_err(|e| format!("cannot listen on {}:{}: {e}", args.bind, args.port))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("cannot read the listening address: {e}"))?;
    let state = Arc::new(ServerState {
        root: root.clone(),
        cache: Mutex::new(HashMap::new()),
        building: tokio::sync::Mutex::new(()),
    });
    let app = Router::new()
        .route("/", get(index))
        .route("/runs/{*path}", get(file))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state);
    // Tests and scripts read this line to find the port.
    println!(
        "faultline serve: {} at http://{addr}/",
        for_terminal(&root.display().to_string())
    );
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| format!("the server stopped: {e}"))
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

async fn security_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if let Ok(v) = HeaderValue::from_str(&content_security_policy()) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    response
}

/// The fields of results.json the front page shows.
#[derive(Clone, Debug, Default, Deserialize)]
struct RunSummary {
    target: Option<String>,
    workload: Option<String>,
    verdict: Option<String>,
    duration_s: Option<f64>,
    #[serde(skip)]
    readable: bool,
}

struct RunRow {
    name: String,
    stamp: String,
    summary: Option<RunSummary>,
    has_report: bool,
}

async fn index(State(state): State<Arc<ServerState>>) -> Response {
    let st = state.clone();
    let rows = match tokio::task::spawn_blocking(move || list_runs(&st)).await {
        Ok(rows) => rows,
        Err(_) => return error(StatusCode::INTERNAL_SERVER_ERROR, "listing runs failed"),
    };
    let mut out = page_head("faultline runs");
    let _ = write!(
        out,
        "<h1>faultline runs</h1><p class=\"muted\">{} — {} run{}</p>",
        html(&state.root.display().to_string()),
        rows.len(),
        if rows.len() == 1 { "" } else { "s" }
    );
    if rows.is_empty() {
        out.push_str("<p>No runs yet: <code>faultline test</code> makes one.</p>");
    } else {
        out.push_str(
            "<table id=\"runs\"><tr><th>verdict</th><th>name</th><th>time</th><th>target</th>\
             <th>workload</th><th>duration</th><th></th></tr>",
        );
        for r in &rows {
            let base = format!("/runs/{}/{}/", url_path(&r.name), url_path(&r.stamp));
            let (verdict, target, workload, duration) = match &r.summary {
                Some(s) if s.readable => (
                    s.verdict.clone().unwrap_or_else(|| "unknown".to_string()),
                    s.target.clone().unwrap_or_default(),
                    s.workload.clone().unwrap_or_default(),
                    s.duration_s
                        .map(|d| format!("{d:.1} s"))
                        .unwrap_or_default(),
                ),
                Some(_) => (
                    "unreadable".to_string(),
                    String::new(),
                    String::new(),
                    String::new(),
                ),
                None => (
                    "incomplete".to_string(),
                    String::new(),
                    String::new(),
                    String::new(),
                ),
            };
            let class = match verdict.as_str() {
                "valid" | "invalid" | "unknown" => verdict.as_str(),
                _ => "other",
            };
            let _ = write!(
                out,
                "<tr><td><span class=\"badge {class}\">{}</span></td><td>{}</td>\
                 <td><a href=\"{base}report.html\">{}</a></td><td>{}</td><td>{}</td><td>{}</td>\
                 <td><a href=\"{base}report.html\">{}</a> · <a href=\"{base}\">files</a></td></tr>",
                html(&verdict.to_uppercase()),
                html(&r.name),
                html(&pretty_stamp(&r.stamp)),
                html(&target),
                html(&workload),
                html(&duration),
                if r.has_report {
                    "report"
                } else {
                    "build report"
                },
            );
        }
        out.push_str("</table>");
    }
    out.push_str("</main></body></html>\n");
    Html(out).into_response()
}

const STYLE: &str = "body{font:14px/1.45 system-ui,sans-serif;margin:0;background:#fafafa;color:#1b1b1b}\
main{max-width:1100px;margin:0 auto;padding:16px 20px;background:#fff}\
table{border-collapse:collapse}th,td{border:1px solid #e2e2e2;padding:3px 8px;text-align:left}\
th{background:#f2f2f2}.muted{color:#666}td.n{text-align:right}\
.badge{display:inline-block;padding:1px 8px;border-radius:4px;color:#fff;font-weight:700;font-size:12px}\
.badge.valid{background:#1a7f3c}.badge.invalid{background:#c62828}.badge.unknown{background:#d88a00}\
.badge.other{background:#777}";

fn page_head(title: &str) -> String {
    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\
         <style>{STYLE}</style></head><body><main>",
        html(title)
    )
}

fn error(code: StatusCode, msg: &str) -> Response {
    let mut out = page_head("faultline serve");
    let _ = write!(
        out,
        "<h1>{}</h1><p>{}</p><p><a href=\"/\">all runs</a></p></main></body></html>",
        code.as_u16(),
        html(msg)
    );
    (code, Html(out)).into_response()
}

/// Every `NAME/STAMP` folder with a history or results in it, newest first.
fn list_runs(state: &ServerState) -> Vec<RunRow> {
    let mut rows = Vec::new();
    let Ok(names) = std::fs::read_dir(&state.root) else {
        return rows;
    };
    for name in names.filter_map(Result::ok) {
        // `latest` is a symlink to a run already listed.
        let Ok(ft) = name.file_type() else { continue };
        let name_str = name.file_name().to_string_lossy().into_owned();
        if !ft.is_dir() || name_str.starts_with('.') {
            continue;
        }
        let Ok(stamps) = std::fs::read_dir(name.path()) else {
            continue;
        };
        for stamp in stamps.filter_map(Result::ok) {
            let dir = stamp.path();
            let stamp_str = stamp.file_name().to_string_lossy().into_owned();
            if stamp_str.starts_with('.') || !dir.is_dir() {
                continue;
            }
            let results = dir.join("results.json");
            let has_results = results.is_file();
            if !has_results && !dir.join("history.jsonl").is_file() {
                continue;
            }
            rows.push(RunRow {
                name: name_str.clone(),
                stamp: stamp_str,
                summary: has_results.then(|| summary(state, &results)),
                has_report: dir.join("report.html").is_file(),
            });
        }
    }
    rows.sort_by(|a, b| b.stamp.cmp(&a.stamp).then_with(|| a.name.cmp(&b.name)));
    rows
}

fn summary(state: &ServerState, path: &Path) -> RunSummary {
    let mtime = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .unwrap_or(SystemTime::UNIX_EPOCH);
    if let Ok(cache) = state.cache.lock() {
        if let Some((t, s)) = cache.get(path) {
            if *t == mtime {
                return s.clone();
            }
        }
    }
    let s = std::fs::File::open(path)
        .ok()
        .and_then(|f| serde_json::from_reader::<_, RunSummary>(std::io::BufReader::new(f)).ok())
        .map(|mut s| {
            s.readable = true;
            s
        })
        .unwrap_or_default();
    if let Ok(mut cache) = state.cache.lock() {
        cache.insert(path.to_path_buf(), (mtime, s.clone()));
    }
    s
}

/// A path under the results folder, or `None` if it tries to leave it.
fn resolve(root: &Path, url_path: &str) -> Option<PathBuf> {
    let mut p = root.to_path_buf();
    for part in url_path.split('/') {
        if part.is_empty() {
            continue;
        }
        if part == "." || part == ".." || part.contains('\\') || part.contains('\0') {
            return None;
        }
        // Refuse anything a platform would read as more than one plain component.
        let mut comps = Path::new(part).components();
        match (comps.next(), comps.next()) {
            (Some(Component::Normal(_)), None) => p.push(part),
            _ => return None,
        }
    }
    Some(p)
}

/// Whether `path` (after following symlinks) is still inside `root`.
fn inside(root: &Path, path: &Path) -> bool {
    std::fs::canonicalize(path).is_ok_and(|c| c.starts_with(root))
}

async fn file(
    State(state): State<Arc<ServerState>>,
    UrlPath(rest): UrlPath<String>,
    request: Request,
) -> Response {
    let Some(path) = resolve(&state.root, &rest) else {
        return error(
            StatusCode::BAD_REQUEST,
            "that path leaves the results folder",
        );
    };
    let is_report = path.file_name().is_some_and(|f| f == "report.html");
    if is_report && !path.exists() {
        let Some(dir) = path.parent().map(Path::to_path_buf) else {
            return error(StatusCode::NOT_FOUND, "no such file");
        };
        if !inside(&state.root, &dir) || !dir.join("history.jsonl").is_file() {
            return error(StatusCode::NOT_FOUND, "no such run");
        }
        let _guard = state.building.lock().await;
        if !path.exists() {
            let built = tokio::task::spawn_blocking(move || crate::write_report(&dir)).await;
            match built {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    return error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        &format!("cannot build the report: {e}"),
                    )
                }
                Err(_) => {
                    return error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "building the report crashed",
                    )
                }
            }
        }
    }
    if !inside(&state.root, &path) {
        return error(StatusCode::NOT_FOUND, "no such file");
    }
    if path.is_dir() {
        if !request.uri().path().ends_with('/') {
            return Redirect::permanent(&format!("{}/", request.uri().path())).into_response();
        }
        let st = state.clone();
        let rel = rest.clone();
        return match tokio::task::spawn_blocking(move || listing(&st.root, &path, &rel)).await {
            Ok(page) => Html(page).into_response(),
            Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "listing failed"),
        };
    }
    let text_like = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e, "jsonl" | "log" | "toml" | "edn" | "txt"));
    match ServeFile::new(&path).oneshot(request).await {
        Ok(resp) => {
            let mut resp = resp.map(Body::new);
            if text_like && resp.status().is_success() {
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                );
            }
            resp
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// A folder's files, with sizes.
fn listing(root: &Path, dir: &Path, rel: &str) -> String {
    let mut entries: Vec<(bool, String, u64)> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| {
                    let meta = e.metadata().ok()?;
                    Some((
                        meta.is_dir(),
                        e.file_name().to_string_lossy().into_owned(),
                        meta.len(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    entries.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let title = rel.trim_matches('/');
    let mut out = page_head(title);
    let _ = write!(
        out,
        "<p><a href=\"/\">all runs</a></p><h1>{}</h1>",
        html(title)
    );
    if dir.join("report.html").is_file() || dir.join("history.jsonl").is_file() {
        out.push_str("<p><a href=\"report.html\">report</a></p>");
    }
    out.push_str("<table><tr><th>file</th><th>size</th></tr>");
    if dir != root {
        out.push_str("<tr><td><a href=\"../\">../</a></td><td></td></tr>");
    }
    for (is_dir, name, len) in entries {
        let shown = if is_dir { format!("{name}/") } else { name };
        let _ = write!(
            out,
            "<tr><td><a href=\"{}\">{}</a></td><td class=\"n\">{}</td></tr>",
            html(&url_path(&shown)),
            html(&shown),
            if is_dir {
                String::new()
            } else {
                len.to_string()
            }
        );
    }
    out.push_str("</table></main></body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_cannot_leave_the_results_folder() {
        let root = Path::new("/r");
        assert_eq!(
            resolve(root, "a/b/c.log"),
            Some(PathBuf::from("/r/a/b/c.log"))
        );
        assert_eq!(resolve(root, "a//b/"), Some(PathBuf::from("/r/a/b")));
        assert_eq!(resolve(root, "a/../../etc/passwd"), None);
        assert_eq!(resolve(root, "./a"), None);
        assert_eq!(resolve(root, "a\\..\\b"), None);
    }
}

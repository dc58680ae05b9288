//! `faultline serve`: the results folder over HTTP, read-only, for reading reports in a browser.
//!
//! It must never serve a file outside the results folder: paths with `..` segments are refused
//! outright, and every path is canonicalized (resolving symlinks) and must still lie under the
//! canonical results folder. It listens on loopback unless told otherwise, answers only GET and
//! HEAD, and writes nothing.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

/// Arguments of `faultline serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// The results folder [default: results/ in the project folder].
    #[arg(long, value_name = "DIR")]
    pub results: Option<PathBuf>,
}

/// What a request path resolves to.
#[derive(Debug, PartialEq, Eq)]
pub enum Resolved {
    /// A file to send.
    File(PathBuf),
    /// A folder: its listing (no `index.html` in it).
    Dir(PathBuf),
    /// The same folder with a trailing slash (so relative links work).
    Redirect(String),
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Maps a URL path to a file under `root` (which must be canonical).
///
/// # Errors
/// `400` for undecodable paths, `403` for paths that leave the root (`..`, symlinks pointing out),
/// `404` for missing files.
pub fn resolve(root: &Path, url_path: &str) -> Result<Resolved, StatusCode> {
    let path = url_path.split(['?', '#']).next().unwrap_or("/");
    let decoded = percent_decode(path).ok_or(StatusCode::BAD_REQUEST)?;
    let mut rel = PathBuf::new();
    for seg in decoded.split('/') {
        match seg {
            "" | "." => {}
            ".." => return Err(StatusCode::FORBIDDEN),
            s if s.contains('\\') || s.contains('\0') => return Err(StatusCode::FORBIDDEN),
            s => rel.push(s),
        }
    }
    let full = root
        .join(&rel)
        .canonicalize()
        .map_err(|_| StatusCode::NOT_FOUND)?;
    if !full.starts_with(root) {
        return Err(StatusCode::FORBIDDEN);
    }
    if full.is_dir() {
        if !decoded.ends_with('/') {
            return Ok(Resolved::Redirect(format!("{path}/")));
        }
        let index = full.join("index.html");
        return Ok(match index.canonicalize() {
            Ok(i) if i.starts_with(root) && i.is_file() => Resolved::File(i),
            _ => Resolved::Dir(full),
        });
    }
    Ok(Resolved::File(full))
}

/// The `Content-Type` for a file name.
pub fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" | "htm" => "text/html; charset=utf-8",
        "svg" => "image/svg+xml",
        "json" => "application/json",
        "css" => "text/css; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "png" => "image/png",
        "jsonl" | "log" | "txt" | "edn" | "toml" | "md" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn respond(status: StatusCode, ctype: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", ctype)
        .header("x-content-type-options", "nosniff")
        .header("cache-control", "no-cache")
        .body(Full::new(body.into()))
        .expect("static headers are valid")
}

fn listing(root: &Path, dir: &Path) -> String {
    let rel = dir.strip_prefix(root).unwrap_or(dir);
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    if e.path().is_dir() { n + "/" } else { n }
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let items: String = names
        .iter()
        .map(|n| {
            let n = faultline_checker::report::escape(n);
            format!("<li><a href=\"{n}\">{n}</a></li>")
        })
        .collect();
    faultline_checker::report::page(
        "listing",
        "",
        &format!(
            "<h1>/{}</h1><p><a href=\"../\">..</a></p><ul>{items}</ul>",
            faultline_checker::report::escape(&rel.display().to_string())
        ),
    )
}

/// Answers one request.
pub async fn handle(
    root: Arc<PathBuf>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(answer(&root, req.method(), req.uri().path()))
}

/// The response to `method path` (separate from hyper's types for tests).
pub fn answer(root: &Path, method: &Method, path: &str) -> Response<Full<Bytes>> {
    if method != Method::GET && method != Method::HEAD {
        return respond(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "read-only\n");
    }
    let head = method == Method::HEAD;
    let body = |b: Vec<u8>| if head { Vec::new() } else { b };
    match resolve(root, path) {
        Ok(Resolved::File(f)) => match std::fs::read(&f) {
            Ok(b) => respond(StatusCode::OK, content_type(&f), body(b)),
            Err(_) => respond(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
        },
        Ok(Resolved::Dir(d)) => {
            let html = if d == root {
                crate::report::index_for(root)
            } else {
                listing(root, &d)
            };
            respond(
                StatusCode::OK,
                "text/html; charset=utf-8",
                body(html.into_bytes()),
            )
        }
        Ok(Resolved::Redirect(to)) => {
            let mut r = respond(StatusCode::MOVED_PERMANENTLY, "text/plain", "");
            if let Ok(v) = to.parse() {
                r.headers_mut().insert("location", v);
            }
            r
        }
        Err(s) => respond(s, "text/plain", format!("{s}\n")),
    }
}

/// Serves `results` on `addr` until the process ends. Prints `serving <root> at http://ADDR/`
/// on stdout once listening.
///
/// # Errors
/// When the folder does not exist or the address cannot be bound.
pub async fn serve(results: &Path, addr: SocketAddr) -> anyhow::Result<()> {
    let root = Arc::new(
        results
            .canonicalize()
            .with_context(|| format!("no results folder {}", results.display()))?,
    );
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let local = listener.local_addr()?;
    if !local.ip().is_loopback() {
        eprintln!("faultline: warning: serving on {local}, reachable from other machines");
    }
    println!("faultline: serving {} at http://{local}/", root.display());
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    loop {
        let (stream, _) = listener.accept().await?;
        let root = root.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| handle(root.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// `faultline serve`.
///
/// # Errors
/// As [`serve`].
pub async fn run(args: &ServeArgs) -> anyhow::Result<u8> {
    let results = args
        .results
        .clone()
        .unwrap_or_else(|| crate::workspace::root().join("results"));
    serve(&results, args.addr).await?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> (tempfile::TempDir, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("results");
        std::fs::create_dir_all(root.join("w/1/nodes")).unwrap();
        std::fs::write(root.join("w/1/report.html"), "<html>").unwrap();
        std::fs::write(root.join("w/1/nodes/n1.log"), "log").unwrap();
        std::fs::write(t.path().join("secret.txt"), "secret").unwrap();
        std::os::unix::fs::symlink(t.path().join("secret.txt"), root.join("w/escape.txt")).unwrap();
        std::os::unix::fs::symlink(t.path(), root.join("w/up")).unwrap();
        std::os::unix::fs::symlink("1", root.join("w/latest")).unwrap();
        let root = root.canonicalize().unwrap();
        (t, root)
    }

    #[test]
    fn paths_that_leave_the_results_folder_are_forbidden() {
        let (_t, root) = tree();
        for p in [
            "/../secret.txt",
            "/w/../../secret.txt",
            "/w/%2e%2e/%2e%2e/secret.txt",
            "/w/escape.txt",
            "/w/up/secret.txt",
            "/w/..%5c..%5csecret.txt",
        ] {
            assert_eq!(resolve(&root, p), Err(StatusCode::FORBIDDEN), "{p}");
        }
        assert_eq!(
            answer(&root, &Method::GET, "/w/escape.txt").status(),
            StatusCode::FORBIDDEN
        );
    }

    #[test]
    fn files_inside_are_served_with_their_types() {
        let (_t, root) = tree();
        assert_eq!(
            resolve(&root, "/w/1/report.html"),
            Ok(Resolved::File(root.join("w/1/report.html")))
        );
        // A symlink inside the folder is fine.
        assert_eq!(
            resolve(&root, "/w/latest/nodes/n1.log?x=1"),
            Ok(Resolved::File(root.join("w/1/nodes/n1.log")))
        );
        assert_eq!(
            resolve(&root, "/w/1"),
            Ok(Resolved::Redirect("/w/1/".into()))
        );
        assert_eq!(
            resolve(&root, "/w/1/nodes/"),
            Ok(Resolved::Dir(root.join("w/1/nodes")))
        );
        assert_eq!(resolve(&root, "/nope"), Err(StatusCode::NOT_FOUND));
        let r = answer(&root, &Method::GET, "/w/1/report.html");
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
        assert_eq!(
            answer(&root, &Method::GET, "/w/1/nodes/n1.log").headers()["content-type"],
            "text/plain; charset=utf-8"
        );
        assert_eq!(content_type(Path::new("a.svg")), "image/svg+xml");
        assert_eq!(
            answer(&root, &Method::POST, "/w/1/report.html").status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
        // The home page is the index even before one was written.
        let home = answer(&root, &Method::GET, "/");
        assert_eq!(home.status(), StatusCode::OK);
    }
}

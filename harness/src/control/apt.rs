//! The host's own apt sources, read so that the base image is built from the same Debian mirror
//! and release as the host (never a mirror host name written into the repository).

use std::path::Path;

/// One usable Debian archive: a mirror URI and a suite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AptSource {
    /// The mirror, e.g. what follows `URIs:` in a deb822 file.
    pub uri: String,
    /// The suite (release codename), e.g. `bookworm`.
    pub suite: String,
}

/// The release codename from the text of `/etc/os-release` (`VERSION_CODENAME=`).
pub fn parse_os_codename(os_release: &str) -> Option<String> {
    os_release.lines().find_map(|line| {
        let v = line.strip_prefix("VERSION_CODENAME=")?;
        let v = v.trim().trim_matches('"');
        (!v.is_empty()).then(|| v.to_string())
    })
}

/// Sources from a one-line-style `sources.list`: `deb [options] URI SUITE COMPONENTS...`.
pub fn parse_sources_list(text: &str) -> Vec<AptSource> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let mut words = line.split_whitespace().peekable();
        if words.next() != Some("deb") {
            continue;
        }
        // Options in brackets may span several words: `[arch=amd64 signed-by=...]`.
        if words.peek().is_some_and(|w| w.starts_with('[')) {
            for w in words.by_ref() {
                if w.ends_with(']') {
                    break;
                }
            }
        }
        if let (Some(uri), Some(suite)) = (words.next(), words.next()) {
            out.push(AptSource {
                uri: uri.to_string(),
                suite: suite.to_string(),
            });
        }
    }
    out
}

/// Sources from a deb822-style `*.sources` file: stanzas with `Types:`, `URIs:`, `Suites:`.
pub fn parse_sources_deb822(text: &str) -> Vec<AptSource> {
    let mut out = Vec::new();
    for stanza in text.split("\n\n") {
        let mut types = Vec::new();
        let mut uris = Vec::new();
        let mut suites = Vec::new();
        let mut enabled = true;
        for line in stanza.lines() {
            if line.trim_start().starts_with('#') {
                continue;
            }
            let Some((field, value)) = line.split_once(':') else {
                continue;
            };
            let values = value.split_whitespace().map(str::to_string);
            match field.trim().to_ascii_lowercase().as_str() {
                "types" => types.extend(values),
                "uris" => uris.extend(values),
                "suites" => suites.extend(values),
                "enabled" => enabled = !value.trim().eq_ignore_ascii_case("no"),
                _ => {}
            }
        }
        if !enabled || !types.iter().any(|t| t == "deb") {
            continue;
        }
        for uri in &uris {
            for suite in &suites {
                out.push(AptSource {
                    uri: uri.clone(),
                    suite: suite.clone(),
                });
            }
        }
    }
    out
}

/// The host's main Debian archive for its own release, read from `root` (normally `/`).
///
/// Prefers a source whose suite is exactly the host's codename (not `-updates` or `-security`).
/// Returns `None`, with the reason, when nothing fits.
pub fn host_apt_source(root: &Path) -> Result<AptSource, String> {
    let os_release = std::fs::read_to_string(root.join("etc/os-release"))
        .map_err(|e| format!("cannot read /etc/os-release: {e}"))?;
    let codename = parse_os_codename(&os_release)
        .ok_or("no VERSION_CODENAME in /etc/os-release (not a Debian-like host?)")?;
    let mut sources = Vec::new();
    if let Ok(text) = std::fs::read_to_string(root.join("etc/apt/sources.list")) {
        sources.extend(parse_sources_list(&text));
    }
    let dir = root.join("etc/apt/sources.list.d");
    if let Ok(entries) = std::fs::read_dir(&dir) {
        let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for p in paths {
            let Ok(text) = std::fs::read_to_string(&p) else {
                continue;
            };
            match p.extension().and_then(|e| e.to_str()) {
                Some("sources") => sources.extend(parse_sources_deb822(&text)),
                Some("list") => sources.extend(parse_sources_list(&text)),
                _ => {}
            }
        }
    }
    sources
        .into_iter()
        .find(|s| s.suite == codename && !s.uri.contains("security"))
        .ok_or_else(|| format!("no apt source for suite '{codename}' in /etc/apt/sources.list(.d)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codename_is_read_with_or_without_quotes() {
        assert_eq!(
            parse_os_codename("ID=debian\nVERSION_CODENAME=bookworm\n").as_deref(),
            Some("bookworm")
        );
        assert_eq!(
            parse_os_codename("VERSION_CODENAME=\"trixie\"").as_deref(),
            Some("trixie")
        );
        assert_eq!(parse_os_codename("ID=debian\n"), None);
    }

    #[test]
    fn one_line_sources_skip_options_comments_and_deb_src() {
        let text = "# comment\ndeb-src http://a.example/debian bookworm main\n\
                    deb [arch=amd64 signed-by=/k.gpg] http://m.example/debian bookworm main contrib\n\
                    deb http://m.example/debian bookworm-updates main # trailing\n";
        let got = parse_sources_list(text);
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[0],
            AptSource {
                uri: "http://m.example/debian".into(),
                suite: "bookworm".into()
            }
        );
        assert_eq!(got[1].suite, "bookworm-updates");
    }

    #[test]
    fn deb822_sources_expand_uris_and_suites_and_honour_enabled() {
        let text = "Types: deb\n# http://commented.example\nURIs: http://m.example/debian\n\
                    Suites: bookworm bookworm-updates\nComponents: main\n\n\
                    Types: deb\nURIs: http://off.example/debian\nSuites: bookworm\nEnabled: no\n\n\
                    Types: deb-src\nURIs: http://src.example/debian\nSuites: bookworm\n";
        let got = parse_sources_deb822(text);
        assert_eq!(
            got,
            vec![
                AptSource {
                    uri: "http://m.example/debian".into(),
                    suite: "bookworm".into()
                },
                AptSource {
                    uri: "http://m.example/debian".into(),
                    suite: "bookworm-updates".into()
                },
            ]
        );
    }

    #[test]
    fn host_source_prefers_the_exact_codename_over_security() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("etc/apt/sources.list.d")).unwrap();
        std::fs::write(
            root.path().join("etc/os-release"),
            "VERSION_CODENAME=bookworm\n",
        )
        .unwrap();
        std::fs::write(
            root.path().join("etc/apt/sources.list.d/debian.sources"),
            "Types: deb\nURIs: http://sec.example/debian-security\nSuites: bookworm-security\n\n\
             Types: deb\nURIs: http://m.example/debian\nSuites: bookworm-updates bookworm\n",
        )
        .unwrap();
        let got = host_apt_source(root.path()).unwrap();
        assert_eq!(
            got,
            AptSource {
                uri: "http://m.example/debian".into(),
                suite: "bookworm".into()
            }
        );
    }

    #[test]
    fn host_source_missing_says_which_suite() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("etc")).unwrap();
        std::fs::write(
            root.path().join("etc/os-release"),
            "VERSION_CODENAME=bookworm\n",
        )
        .unwrap();
        let err = host_apt_source(root.path()).unwrap_err();
        assert!(err.contains("bookworm"), "{err}");
    }
}
